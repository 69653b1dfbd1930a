"""The shipped scenarios against the real stack (`eldercare up`) at high clock speed.

Every scenario whose `requires` the current detectors meet runs. Scenarios about silence
(inactivity, check-in, offline devices) run ahead of the wall clock on a second stack of their
own, started with a wide ingest future window: the detectors advance idle partitions by the
wall clock, so a timeline placed in the past would look like days of silence to them."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from io import StringIO
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from rich.console import Console

from eldercare.stack import embedded
from foundation import db, kafka, procs
from foundation.config import Settings, child_env
from simulators.capabilities import available
from simulators.runner import ScenarioReport, render, run_files, run_scenario
from simulators.scenario import Scenario, load
from tests.conftest import eldercare_up

SCENARIOS = Path(__file__).resolve().parents[1] / "scenarios"
SILENCE = {"inactivity", "away", "checkin_missed", "device_offline", "gateway_offline",
           "low_battery"}
# The second stack runs the detectors' timers every 0.1 s (silence is judged at simulated-hour
# resolution even at 20 000x) and holds smoke alarms 20 s before alerting (burnt toast).
AHEAD_ENV = {"ELDERCARE_DETECT_TIMER_TICK_S": "0.1", "ELDERCARE_DETECT_ALARM_MIN_HOLD_S": "20"}
AHEAD_ONLY = SILENCE | {"alarm_hold"}


def _table(reports: list[ScenarioReport]) -> str:
    buf = StringIO()
    render(reports, Console(file=buf, width=200))
    return buf.getvalue()


def _runnable(ahead: bool) -> list[tuple[Path, Scenario]]:
    have = available() | ({"alarm_hold"} if ahead else set())
    out = []
    for path in sorted(SCENARIOS.glob("*.yaml")):
        sc = load(path)
        if set(sc.requires) <= have and bool(set(sc.requires) & AHEAD_ONLY) == ahead:
            out.append((path, sc))
    return out


@pytest.mark.timeout(600)  # about a minute on a quiet machine; CI runners are shared
async def test_every_runnable_event_scenario_passes(platform: Settings) -> None:
    runnable = _runnable(ahead=False)
    assert len(runnable) >= 8, [p.name for p, _ in runnable]
    # Each scenario has its own elders (ids carry a run tag), so they can share the stack.
    reports = list(await asyncio.gather(*(run_scenario(sc, platform) for _, sc in runnable)))
    for (path, _), rep in zip(runnable, reports, strict=True):
        rep.path = path.name
    print(_table(reports))
    assert all(r.ok for r in reports), _table(reports)


def _with_db(url: str, name: str) -> str:
    u = urlsplit(url)
    return urlunsplit((u.scheme, u.netloc, f"/{name}", u.query, u.fragment))


@pytest.fixture(scope="module")
def ahead_stack(infra: Settings, workdir: Path) -> Iterator[Settings]:
    """A second `eldercare up` (own broker, Kafka and database on the same PostgreSQL server)
    whose ingest accepts device times up to 40 days ahead, with `AHEAD_ENV` for the detectors,
    and no Twilio (dry-run channel)."""
    wd = workdir / "ahead"
    wd.mkdir(exist_ok=True)
    kf, mq = embedded.start_kafka(wd), embedded.start_mqtt(wd)
    with psycopg.connect(infra.database_url, autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS sim_ahead")
        conn.execute("CREATE DATABASE sim_ahead")
    settings = infra.model_copy(update={
        "database_url": _with_db(infra.database_url, "sim_ahead"), "kafka_bootstrap": kf.url,
        "mqtt_url": mq.url, "mqtt_auth_dir": mq.extra["auth_dir"], "data_dir": wd,
        "mqtt_device_url": mq.extra["device_url"],
        "console_bind": f"127.0.0.1:{procs.free_port()}",
        "ingest_http_bind": f"127.0.0.1:{procs.free_port()}",
        "metrics_binds": ",".join(f"{n}=127.0.0.1:{procs.free_port()}"
                                  for n in ("detectors", "dispatcher", "store")),
        "ingest_max_future_s": 40 * 86400.0,
    })
    db.upgrade(settings.database_url)
    asyncio.run(kafka.ensure_topics(settings))
    try:
        with eldercare_up(settings, wd / "up.log", AHEAD_ENV, timeout=120) as running:
            yield running
    finally:
        mq.stop()
        kf.stop()


@pytest.mark.timeout(900)  # two to three minutes on a quiet machine
async def test_every_runnable_silence_and_hold_scenario_passes_ahead_of_the_clock(
    ahead_stack: Settings,
) -> None:
    runnable = _runnable(ahead=True)
    if not runnable:
        pytest.skip("no silence detector is wired into detectors.engine yet")
    # One after another, each span starting after the previous one: event time only advances.
    reports = await run_files([p for p, _ in runnable], ahead_stack, ahead=True)
    print(_table(reports))
    assert all(r.ok for r in reports), _table(reports)


def test_cli_exits_non_zero_on_a_mismatch_with_a_readable_report(
    platform: Settings, tmp_path: Path,
) -> None:
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text(
        "name: expects an SOS nobody presses\nduration: 10m\nspeed: 600\ntimeout: 3s\n"
        "population: {elders: [{key: a}]}\n"
        "expect:\n  - {elder: a, alert: sos, within: 1m}\n  - {elder: a, no_alert: any}\n",
        encoding="utf-8")
    env = {**child_env(platform), "COLUMNS": "200"}
    done = subprocess.run(
        [sys.executable, "-m", "eldercare.cli", "scenario", "run", str(wrong),
         str(SCENARIOS / "heat_alarm.yaml")],
        env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "FAIL" in done.stdout and "alert sos within 1m" in done.stdout
    assert "1 of 2 scenarios passed" in done.stdout, done.stdout
