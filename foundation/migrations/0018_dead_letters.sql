-- Dead letters archived from Kafka (eldercare.deadletter.v1) by the store service, so that a
-- roll of the embedded broker, or a real broker's retention, never throws one away. A record
-- read twice (a redelivery after a restart) is the same bytes: the hash keeps it once.
CREATE TABLE IF NOT EXISTS dead_letters (
    id                bigserial PRIMARY KEY,
    record_sha256     text NOT NULL UNIQUE,
    source            text NOT NULL,
    topic             text NOT NULL,
    reason            text NOT NULL,
    detail            text NOT NULL,
    received_at       timestamptz,
    payload           bytea NOT NULL,
    payload_size      integer NOT NULL,
    payload_truncated boolean NOT NULL,
    payload_sha256    text NOT NULL,
    archived_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS dead_letters_received ON dead_letters (received_at DESC);
