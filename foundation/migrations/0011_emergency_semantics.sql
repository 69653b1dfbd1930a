-- Issue 16: emergency semantics (docs/escalation.md).

-- Each community's own clock: who is on shift, the times in messages, monthly statistics.
ALTER TABLE communities ADD COLUMN IF NOT EXISTS time_zone text NOT NULL DEFAULT 'Asia/Shanghai';

-- Per-community rules as data (dispatcher/ladder.py `Rules`): grouping window, ladder per kind,
-- reminder delay. No row = the built-in defaults.
CREATE TABLE IF NOT EXISTS community_rules (
    community_id text PRIMARY KEY REFERENCES communities(id) ON DELETE CASCADE,
    rules        jsonb NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    updated_by   text NOT NULL DEFAULT ''
);

-- Who took responsibility, reachable: the reminder and a repeated press go to this number.
ALTER TABLE incidents ADD COLUMN IF NOT EXISTS acknowledged_phone text;
ALTER TABLE incidents ADD COLUMN IF NOT EXISTS last_alert_at timestamptz;

-- Why a step exists: the escalation ladder, a re-alert after a repeated press, a reminder of an
-- acknowledged incident, the outcome SMS after resolution. Only ladder steps stop when someone
-- takes responsibility.
ALTER TABLE escalation_steps ADD COLUMN IF NOT EXISTS purpose text NOT NULL DEFAULT 'ladder';

-- Alerts of one elder join across kinds: the open-incident lookup is per elder.
CREATE INDEX IF NOT EXISTS incidents_open_elder ON incidents (elder_id, opened_at)
    WHERE status <> 'resolved';
