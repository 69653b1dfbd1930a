-- Issue 15, privacy (docs/security-console.md): one elder's personal data erased on request,
-- incidents anonymised for statistics, and retention that deletes by age.

-- An erased elder stays as an empty row so their anonymised incidents still count.
ALTER TABLE elders ADD COLUMN IF NOT EXISTS erased_at timestamptz;
-- Set when an incident's names, numbers, notes and payloads were removed (retention or erase).
ALTER TABLE incidents ADD COLUMN IF NOT EXISTS anonymised_at timestamptz;

-- Retention deletes by age.
CREATE INDEX IF NOT EXISTS audit_log_at ON audit_log (at);
CREATE INDEX IF NOT EXISTS notifications_created ON notifications (created_at);
CREATE INDEX IF NOT EXISTS incidents_to_anonymise ON incidents (resolved_at)
    WHERE anonymised_at IS NULL;
