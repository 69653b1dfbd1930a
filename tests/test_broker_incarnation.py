"""Checkpoints belong to one broker incarnation (issue 14): the marker record, and the rule that
decides whether a checkpointed offset still points into the broker's log."""

from __future__ import annotations

import asyncio
from pathlib import Path

from detectors.store import offset_still_valid
from eldercare.stack import embedded
from foundation import kafka
from foundation.config import Settings


def test_offsets_of_another_incarnation_are_not_trusted() -> None:
    assert offset_still_valid(120, "a", "a", log_end=130)
    assert not offset_still_valid(120, "a", "b", log_end=500), "a new broker: a new log"
    assert not offset_still_valid(120, "a", "b", log_end=None)
    # tansu 0.6 reports a partition's end as its last batch's first offset + 1
    assert offset_still_valid(16, "a", "a", log_end=12), "inside the last batch"


def test_a_checkpoint_from_before_incarnations_is_trusted_only_inside_the_log() -> None:
    assert offset_still_valid(120, "", "b", log_end=120)
    assert not offset_still_valid(120, "", "b", log_end=3), "the broker lost its topics"


def test_every_process_reads_the_same_incarnation_and_a_new_broker_has_a_new_one(
    infra: Settings, tmp_path: Path,
) -> None:
    first = asyncio.run(kafka.incarnation(infra))
    assert first and asyncio.run(kafka.incarnation(infra)) == first

    fresh = embedded.start_kafka(tmp_path)  # what a restarted embedded broker is: empty
    try:
        other = infra.model_copy(update={"kafka_bootstrap": fresh.url})
        asyncio.run(kafka.ensure_topics(other))
        second = asyncio.run(kafka.incarnation(other))
        assert second and second != first
        assert asyncio.run(kafka.incarnation(other)) == second
    finally:
        fresh.stop()
