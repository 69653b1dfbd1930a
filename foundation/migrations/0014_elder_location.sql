-- Where an elder lives and may roam: the home position (WGS-84, with the radius that counts as
-- "at home") and an optional safe zone (circle around home or polygon, active hours, dwell).
-- Both are JSON validated by devices/records.py; NULL = not set.
ALTER TABLE elders ADD COLUMN IF NOT EXISTS home jsonb;
ALTER TABLE elders ADD COLUMN IF NOT EXISTS safe_zone jsonb;
