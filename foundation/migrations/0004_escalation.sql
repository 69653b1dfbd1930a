-- Issue 7: incident lifecycle, escalation policies per elder, durable ladder with rounds.

-- Per-elder overrides of the default ladders (dispatcher/ladder.py). `severity` is one of
-- critical/high/medium/low, or 'maintenance' for device-health alerts.
CREATE TABLE escalation_policies (
    elder_id    text NOT NULL REFERENCES elders(id) ON DELETE CASCADE,
    severity    text NOT NULL,
    policy      jsonb NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (elder_id, severity)
);

ALTER TABLE incidents
    ADD COLUMN acknowledged_via   text,
    ADD COLUMN alert_at           timestamptz,
    ADD COLUMN first_notified_at  timestamptz,
    ADD COLUMN maintenance        boolean NOT NULL DEFAULT false;
UPDATE incidents SET alert_at = opened_at WHERE alert_at IS NULL;
CREATE INDEX incidents_stats ON incidents (community_id, opened_at);

-- A step's due time is set when the step before it finishes (now + wait_s): the wait after a
-- call is the time the callee has to acknowledge. NULL = not yet scheduled.
ALTER TABLE escalation_steps
    ALTER COLUMN due_at DROP NOT NULL,
    ADD COLUMN round       int NOT NULL DEFAULT 1,
    ADD COLUMN wait_s      double precision NOT NULL DEFAULT 0,
    ADD COLUMN worker_lock bigint,
    ADD COLUMN result      text;
CREATE INDEX escalation_steps_running ON escalation_steps (worker_lock) WHERE status = 'running';

ALTER TABLE notifications
    ADD COLUMN attempts     int NOT NULL DEFAULT 0,
    ADD COLUMN answered_by  text,
    ADD COLUMN provider_status text;
CREATE INDEX notifications_to_number ON notifications (to_number, created_at);
CREATE INDEX notifications_incident ON notifications (incident_id);
