"""Record -> replay: live MQTT traffic of a scenario recorded to JSONL and played back onto a
second copy of the same population reproduces the same incidents (same kinds, same elders)."""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path

import psycopg

from devices.registry import save
from foundation.config import Settings
from simulators import population, recording
from simulators.runner import run_scenario
from simulators.scenario import Scenario
from tests.helpers import eventually

SCENARIO = Scenario.model_validate({
    "name": "three emergencies", "start": "09:00", "duration": "40m", "speed": 600,
    "seed": 9, "timeout": "20s",
    "population": {"elders": [{"key": "a"}, {"key": "b"}, {"key": "c"}]},
    "inject": [
        {"at": "10m", "elder": "a", "event": "sos"},
        {"at": "15m", "elder": "b", "event": "fall", "mode": "both"},
        {"at": "20m", "elder": "c", "event": "smoke"},
    ],
    "expect": [{"elder": "a", "incident": "sos"}, {"elder": "b", "incident": "fall"},
               {"elder": "c", "incident": "smoke"}],
})


def _incident_kinds(database_url: str, tag: str) -> dict[str, set[str]]:
    """{elder key: emergency incident kinds} for the elders of run `tag`. Device-health incidents
    (maintenance) are left out: they follow from when a run's devices fall silent after its end,
    which a recording of the run's own minutes does not decide."""
    with psycopg.connect(database_url) as conn:
        rows = conn.execute("SELECT elder_id, kind FROM incidents"
                            " WHERE elder_id LIKE %s AND NOT maintenance",
                            (f"E-{tag}-%",)).fetchall()
    out: dict[str, set[str]] = {}
    for elder_id, kind in rows:
        out.setdefault(elder_id.removeprefix(f"E-{tag}-"), set()).add(kind)
    return out


async def test_record_then_replay_reproduces_the_incidents(
    platform: Settings, tmp_path: Path,
) -> None:
    first, second = f"r{secrets.token_hex(3)}", f"p{secrets.token_hex(3)}"
    jsonl = tmp_path / "run.jsonl"
    stop, subscribed = asyncio.Event(), asyncio.Event()
    with jsonl.open("w", encoding="utf-8") as out:
        recorder = asyncio.create_task(recording.record(
            platform.mqtt_url, out, stop, f"eldercare/v1/c-sim-{first}-1/#",
            subscribed=subscribed))
        await asyncio.wait_for(subscribed.wait(), 10)
        report = await run_scenario(SCENARIO, platform, tag=first)
        stop.set()
        count = await recorder
    assert report.ok, [(v.expectation.describe(), v.detail) for v in report.verdicts]
    original = _incident_kinds(platform.database_url, first)
    assert original == {"a": {"sos"}, "b": {"fall"}, "c": {"smoke"}}

    records = recording.read(jsonl)
    assert len(records) == count > report.published  # events plus status/will messages
    assert [r.t for r in records] == sorted(r.t for r in records)
    assert {r.qos for r in records if r.topic.endswith("/event")} == {1}

    # The same people again under other ids, then the recording played onto them 20x faster.
    pop = SCENARIO.population
    communities, _ = population.build(second, pop.elder_specs(), pop.communities,
                                         pop.extra_elders, SCENARIO.seed)
    save(platform.database_url, communities)
    renamed = recording.retag(records, [(first, second)])
    await recording.replay(renamed, platform.mqtt_url, speed=20)
    await eventually(lambda: _incident_kinds(platform.database_url, second) == original, 30,
                     f"replayed incidents {original}")
