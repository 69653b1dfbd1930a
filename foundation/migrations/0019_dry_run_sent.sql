-- What the dry-run channel "sent" (ELDERCARE_NOTIFY=dry-run): kept so a dispatcher recovering
-- a crashed step can ask it "was this sent?" exactly as it asks Twilio (dispatcher/channels.py).
CREATE TABLE IF NOT EXISTS dry_run_sent (
    sid        text PRIMARY KEY,
    kind       text NOT NULL CHECK (kind IN ('call', 'sms')),
    to_number  text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS dry_run_sent_to ON dry_run_sent (to_number, kind, created_at);
