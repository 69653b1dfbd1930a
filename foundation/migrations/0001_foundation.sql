-- Registry: communities, elders, contacts, devices, staff.
CREATE TABLE communities (
    id              text PRIMARY KEY,
    name            text NOT NULL,
    district        text NOT NULL DEFAULT '',
    street          text NOT NULL DEFAULT '',
    emergency_line  text NOT NULL DEFAULT ''
);

CREATE TABLE elders (
    id              text PRIMARY KEY,
    community_id    text NOT NULL REFERENCES communities(id),
    name            text NOT NULL,
    address         text NOT NULL DEFAULT '',
    phone           text NOT NULL DEFAULT '',
    lives_alone     boolean NOT NULL DEFAULT false,
    care_level      text NOT NULL DEFAULT 'self_care',
    language        text NOT NULL DEFAULT 'zh-Hans',
    medical_notes   text NOT NULL DEFAULT '',
    active          boolean NOT NULL DEFAULT true,
    created_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE contacts (
    id              bigserial PRIMARY KEY,
    elder_id        text NOT NULL REFERENCES elders(id),
    priority        int NOT NULL,
    name            text NOT NULL,
    relation        text NOT NULL DEFAULT '',
    phone           text NOT NULL,
    can_sms         boolean NOT NULL DEFAULT true,
    language        text NOT NULL DEFAULT 'zh-Hans',
    UNIQUE (elder_id, priority)
);

CREATE TABLE devices (
    id                    text PRIMARY KEY,
    kind                  text NOT NULL,
    elder_id              text NOT NULL REFERENCES elders(id),
    room                  text NOT NULL DEFAULT '',
    heartbeat_interval_s  int NOT NULL DEFAULT 3600,
    battery               int,
    last_seen             timestamptz,
    status                text NOT NULL DEFAULT 'unknown',
    active                boolean NOT NULL DEFAULT true
);
CREATE INDEX devices_elder ON devices (elder_id);

CREATE TABLE staff (
    id              text PRIMARY KEY,
    community_id    text REFERENCES communities(id),
    name            text NOT NULL,
    phone           text NOT NULL DEFAULT '',
    role            text NOT NULL DEFAULT 'duty',
    on_duty         boolean NOT NULL DEFAULT true
);

-- Incidents and their escalation.
CREATE TABLE incidents (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    elder_id        text NOT NULL REFERENCES elders(id),
    community_id    text NOT NULL REFERENCES communities(id),
    kind            text NOT NULL,
    severity        text NOT NULL,
    status          text NOT NULL DEFAULT 'open',
    opened_at       timestamptz NOT NULL DEFAULT now(),
    event_time      timestamptz NOT NULL,
    acknowledged_at timestamptz,
    acknowledged_by text,
    resolved_at     timestamptz,
    outcome         text,
    notes           text NOT NULL DEFAULT '',
    ladder          jsonb NOT NULL DEFAULT '[]'
);
CREATE INDEX incidents_open ON incidents (elder_id, kind) WHERE status <> 'resolved';

CREATE TABLE incident_alerts (
    alert_id        text PRIMARY KEY,
    incident_id     uuid NOT NULL REFERENCES incidents(id),
    received_at     timestamptz NOT NULL DEFAULT now(),
    alert           jsonb NOT NULL
);

CREATE TABLE escalation_steps (
    id              bigserial PRIMARY KEY,
    incident_id     uuid NOT NULL REFERENCES incidents(id),
    seq             int NOT NULL,
    action          text NOT NULL,
    target          jsonb NOT NULL,
    due_at          timestamptz NOT NULL,
    status          text NOT NULL DEFAULT 'pending',
    attempts        int NOT NULL DEFAULT 0,
    claimed_by      text,
    claimed_at      timestamptz,
    finished_at     timestamptz,
    UNIQUE (incident_id, seq)
);
CREATE INDEX escalation_steps_due ON escalation_steps (due_at) WHERE status = 'pending';

CREATE TABLE notifications (
    id               bigserial PRIMARY KEY,
    idempotency_key  text NOT NULL UNIQUE,
    incident_id      uuid NOT NULL REFERENCES incidents(id),
    step_id          bigint REFERENCES escalation_steps(id),
    channel          text NOT NULL,
    to_number        text NOT NULL,
    recipient        text NOT NULL DEFAULT '',
    body             text NOT NULL,
    status           text NOT NULL DEFAULT 'sending',
    provider_sid     text,
    error            text,
    dry_run          boolean NOT NULL DEFAULT false,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);

-- The timeline is the story of an incident; every row is pushed to consoles as it is written.
CREATE TABLE incident_timeline (
    id              bigserial PRIMARY KEY,
    incident_id     uuid NOT NULL REFERENCES incidents(id),
    at              timestamptz NOT NULL DEFAULT now(),
    kind            text NOT NULL,
    detail          jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX incident_timeline_incident ON incident_timeline (incident_id, id);

CREATE FUNCTION notify_incident_timeline() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('incident_timeline', NEW.id::text);
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER incident_timeline_notify AFTER INSERT ON incident_timeline
    FOR EACH ROW EXECUTE FUNCTION notify_incident_timeline();
