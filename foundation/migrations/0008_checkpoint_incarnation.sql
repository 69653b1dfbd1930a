-- A detectors checkpoint belongs to one broker incarnation (the record at offset 0 of
-- eldercare.incarnation.v1): offsets stored for a broker that has since lost its topics (the
-- embedded tansu keeps them in memory) are not offsets of the new log (issue 14).
-- '' marks a checkpoint written before incarnations were recorded.
ALTER TABLE detector_checkpoints ADD COLUMN IF NOT EXISTS incarnation text NOT NULL DEFAULT '';
