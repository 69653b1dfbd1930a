-- Registry details: personal data, away periods, contact channels, device details, staff scope,
-- device MQTT credentials; readings storage and hourly rollups.

ALTER TABLE communities ADD COLUMN active boolean NOT NULL DEFAULT true;

ALTER TABLE elders
    ADD COLUMN id_number  text NOT NULL DEFAULT '',
    ADD COLUMN updated_at timestamptz NOT NULL DEFAULT now(),
    ADD CONSTRAINT elders_care_level
        CHECK (care_level IN ('self_care', 'partly_dependent', 'dependent'));
CREATE INDEX elders_community ON elders (community_id);

-- A hospital stay or a visit to family: inactivity is expected, not an emergency.
CREATE TABLE elder_away_periods (
    id          bigserial PRIMARY KEY,
    elder_id    text NOT NULL REFERENCES elders(id),
    starts_at   timestamptz NOT NULL,
    ends_at     timestamptz,
    reason      text NOT NULL DEFAULT '',
    CHECK (ends_at IS NULL OR ends_at > starts_at)
);
CREATE INDEX elder_away_periods_elder ON elder_away_periods (elder_id, starts_at);

ALTER TABLE contacts
    ADD COLUMN channels text[] NOT NULL DEFAULT '{voice,sms}',
    ADD CONSTRAINT contacts_channels CHECK (channels <@ ARRAY['voice', 'sms']::text[]);

ALTER TABLE devices
    ADD COLUMN serial     text NOT NULL DEFAULT '',
    ADD COLUMN model      text NOT NULL DEFAULT '',
    ADD COLUMN firmware   text NOT NULL DEFAULT '',
    ADD COLUMN created_at timestamptz NOT NULL DEFAULT now(),
    ADD CONSTRAINT devices_battery CHECK (battery IS NULL OR battery BETWEEN 0 AND 100);

ALTER TABLE staff
    ADD COLUMN scope       text NOT NULL DEFAULT 'community',
    ADD COLUMN street      text NOT NULL DEFAULT '',
    ADD COLUMN duty_roster jsonb NOT NULL DEFAULT '[]',
    ADD COLUMN active      boolean NOT NULL DEFAULT true,
    ADD CONSTRAINT staff_scope CHECK (scope IN ('community', 'street'));

-- One MQTT login per device; the password is shown once and only its $7$ hash is kept.
CREATE TABLE device_credentials (
    device_id      text PRIMARY KEY REFERENCES devices(id),
    password_hash  text NOT NULL,
    issued_at      timestamptz NOT NULL DEFAULT now()
);

-- Every canonical event, idempotent on (device, message id). The event time is part of the key
-- because a partitioned table's keys must contain the partition column; a replayed event has
-- the same event time, so the key still catches it.
DO $$
DECLARE
    timescale boolean := EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb')
        AND current_setting('shared_preload_libraries') LIKE '%timescaledb%';
    columns text := '
        event_time    timestamptz NOT NULL,
        device_id     text NOT NULL,
        msg_id        text NOT NULL,
        elder_id      text NOT NULL,
        community_id  text NOT NULL,
        type          text NOT NULL,
        data          jsonb NOT NULL,
        received_at   timestamptz NOT NULL,
        PRIMARY KEY (device_id, msg_id, event_time)';
BEGIN
    IF timescale THEN
        CREATE EXTENSION IF NOT EXISTS timescaledb;
        EXECUTE 'CREATE TABLE readings (' || columns || ')';
        PERFORM create_hypertable('readings', 'event_time', chunk_time_interval => interval '1 day');
    ELSE
        EXECUTE 'CREATE TABLE readings (' || columns || ') PARTITION BY RANGE (event_time)';
    END IF;
END $$;
-- A device's readings are found through the key (device_id first) within the day partitions
-- the time range selects, so only the elder needs an index of its own.
CREATE INDEX readings_elder ON readings (elder_id, type, event_time);

-- Hourly rollups kept by the writer in the same transaction as the readings: one row per numeric
-- field, and one with field '' counting the readings.
CREATE TABLE readings_hourly (
    hour       timestamptz NOT NULL,
    device_id  text NOT NULL,
    elder_id   text NOT NULL,
    type       text NOT NULL,
    field      text NOT NULL,
    n          bigint NOT NULL,
    sum        double precision,
    min        double precision,
    max        double precision,
    PRIMARY KEY (device_id, type, hour, field)
);
CREATE INDEX readings_hourly_elder ON readings_hourly (elder_id, type, hour);
