-- Where the elder was at the press (WGS-84, as ingest normalised it), recorded with the incident:
-- from the alert's own position, else the newest fix of the 5 minutes before it.
ALTER TABLE incidents ADD COLUMN IF NOT EXISTS location jsonb;
