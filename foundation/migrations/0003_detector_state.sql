-- Detector state: per-elder state rows and per-partition checkpoints, written in one transaction
-- so that state and the consumed offsets always agree (issue 6).
CREATE TABLE detector_state (
    group_id    text NOT NULL,
    elder_id    text NOT NULL,
    partition   int NOT NULL,
    state       jsonb NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (group_id, elder_id)
);
CREATE INDEX detector_state_partition ON detector_state (group_id, partition);

CREATE TABLE detector_checkpoints (
    group_id     text NOT NULL,
    topic        text NOT NULL,
    partition    int NOT NULL,
    next_offset  bigint NOT NULL,
    watermark    timestamptz,
    rearmed_at   timestamptz,
    saved_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (group_id, topic, partition)
);

-- Per-elder detector limits, e.g. {"sbp_high": 170, "checkin_deadline_h": 10}; keys are the
-- DetectorConfig field names.
ALTER TABLE elders ADD COLUMN IF NOT EXISTS detector_thresholds jsonb NOT NULL DEFAULT '{}';
