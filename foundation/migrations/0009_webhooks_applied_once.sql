-- Twilio webhooks are applied once. A captured, correctly signed request replayed later (or
-- Twilio retrying one we already applied) finds its key here and changes nothing. Keys:
--   sms:<MessageSid>            an inbound SMS
--   gather:<CallSid>            a keypress during an alert call
--   status:<Sid>:<status>       one status callback of a call or SMS
-- The row is written in the same transaction as the webhook's effect, so a webhook that failed
-- half-way is applied when Twilio retries it.
CREATE TABLE IF NOT EXISTS twilio_webhooks_applied (
    key         text PRIMARY KEY,
    applied_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS twilio_webhooks_applied_age ON twilio_webhooks_applied (applied_at);
