"""`eldercare demo` on a fresh machine without mosquitto: the embedded amqtt broker (MQTT 3.1.1
only) carries the demo's SOS to an incident, and the tester commands find the stack by itself."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from eldercare.stack import procs, state
from tests.helpers import eventually


def _path_without_mosquitto(path: str, into: Path) -> Path:
    """One directory with a link to every program on `path` but mosquitto's."""
    into.mkdir(exist_ok=True)
    for folder in path.split(os.pathsep):
        if not os.path.isdir(folder):
            continue
        for program in os.listdir(folder):
            link = into / program
            if not program.startswith("mosquitto") and not link.exists():
                link.symlink_to(Path(folder, program))
    return into


def _fresh_machine_env(data_dir: Path, path_dir: Path) -> dict[str, str]:
    """A newcomer's shell: no ELDERCARE_ URL set, no mosquitto on PATH, free ports."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ELDERCARE_")}
    env["PATH"] = str(_path_without_mosquitto(env.get("PATH", ""), path_dir))
    binds = ",".join(f"{n}=127.0.0.1:{procs.free_port()}"
                     for n in ("detectors", "dispatcher", "store"))
    env.update({
        "ELDERCARE_DATA_DIR": str(data_dir),
        # /usr/sbin/mosquitto is looked up outside PATH too: the setting hides it as well
        "ELDERCARE_EMBEDDED_MQTT": "amqtt",
        "ELDERCARE_DEMO_SOS_AFTER_S": "2",
        "ELDERCARE_CONSOLE_BIND": f"127.0.0.1:{procs.free_port()}",
        "ELDERCARE_WEBHOOKS_BIND": f"127.0.0.1:{procs.free_port()}",
        "ELDERCARE_INGEST_HTTP_BIND": f"127.0.0.1:{procs.free_port()}",
        "ELDERCARE_METRICS_BINDS": binds,
    })
    return env


@pytest.fixture(scope="module")
def demo(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Path, subprocess.Popen[bytes]]]:
    """`eldercare demo` as a newcomer runs it; stopped with Ctrl-C afterwards."""
    root = tmp_path_factory.mktemp("first-run")
    data_dir = root / "data"
    env = _fresh_machine_env(data_dir, root / "bin")
    log = (root / "demo.log").open("ab")
    proc = subprocess.Popen([sys.executable, "-m", "eldercare.cli", "demo"], env=env,
                            stdout=log, stderr=subprocess.STDOUT, cwd=root)
    try:
        yield data_dir, proc
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
    # Stopped: the stack is no longer advertised to tester commands.
    assert not state.path(data_dir).exists()


def _sos_incidents(database_url: str) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT count(*) FROM incidents WHERE kind = 'sos'").fetchone()
    return int(row[0]) if row else 0


@pytest.mark.timeout(150)
def test_demo_without_mosquitto_turns_the_sos_into_an_incident(
    demo: tuple[Path, subprocess.Popen[bytes]],
) -> None:
    data_dir, proc = demo

    def started() -> state.StackState | None:
        assert proc.poll() is None, f"`eldercare demo` exited; see {data_dir.parent}/demo.log"
        return state.read(data_dir)

    running = asyncio.run(eventually(started, 60, "stack.json of `demo`"))
    assert running.settings["mqtt_protocol"] == "3.1.1"
    url = running.settings["database_url"]
    asyncio.run(eventually(lambda: _sos_incidents(url), 60, "the demo's SOS incident"))
    ingest_log = (data_dir / "ingest.log").read_text(errors="replace")
    assert "mqtt connection lost" not in ingest_log
