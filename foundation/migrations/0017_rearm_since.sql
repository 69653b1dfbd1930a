-- When the outage that re-armed a partition's silence timers began: the re-arm applies to
-- judgments at event times from then on, not to a replay or a buffered upload of earlier days.
ALTER TABLE detector_checkpoints ADD COLUMN IF NOT EXISTS rearm_since timestamptz;
