"""`eldercare demo` on a fresh machine without mosquitto: the embedded amqtt broker (MQTT 3.1.1
only) carries the demo's SOS to an incident, and the tester commands find the stack by itself."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from eldercare import cli
from foundation import procs
from foundation import stack_state as state
from foundation.config import get_settings
from tests.helpers import eventually

SCENARIOS = Path(__file__).resolve().parents[1] / "scenarios"


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
        "ELDERCARE_DEMO_SOS_AFTER_S": "20",  # after ingest has subscribed, on a busy CI too
        "ELDERCARE_CONSOLE_BIND": f"127.0.0.1:{procs.free_port()}",
        "ELDERCARE_WEBHOOKS_BIND": f"127.0.0.1:{procs.free_port()}",
        "ELDERCARE_INGEST_HTTP_BIND": f"127.0.0.1:{procs.free_port()}",
        "ELDERCARE_METRICS_BINDS": binds,
    })
    return env


@dataclass
class Demo:
    """A running `eldercare demo` and the newcomer's environment it was started from."""

    root: Path
    data_dir: Path
    env: dict[str, str]
    proc: subprocess.Popen[bytes]

    def started(self) -> state.StackState | None:
        assert self.proc.poll() is None, f"`eldercare demo` exited; see {self.root}/demo.log"
        return state.read(self.data_dir)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    """`eldercare demo` as a newcomer runs it; stopped with Ctrl-C afterwards."""
    root = tmp_path_factory.mktemp("first-run")
    data_dir = root / "data"
    env = _fresh_machine_env(data_dir, root / "bin")
    log = (root / "demo.log").open("ab")
    proc = subprocess.Popen([sys.executable, "-m", "eldercare.cli", "demo"], env=env,
                            stdout=log, stderr=subprocess.STDOUT, cwd=root)
    try:
        yield Demo(root, data_dir, env, proc)
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
def test_demo_without_mosquitto_turns_the_sos_into_an_incident(demo: Demo) -> None:
    running = asyncio.run(eventually(demo.started, 60, "stack.json of `demo`"))
    assert running.settings["mqtt_protocol"] == "3.1.1"
    assert state.path(demo.data_dir).stat().st_mode & 0o077 == 0  # URLs carry passwords
    url = running.settings["database_url"]
    asyncio.run(eventually(lambda: _sos_incidents(url), 60, "the demo's SOS incident"))
    ingest_log = (demo.data_dir / "ingest.log").read_text(errors="replace")
    assert "mqtt connection lost" not in ingest_log


@pytest.mark.timeout(150)
def test_scenario_run_and_db_commands_find_the_running_demo_by_themselves(demo: Demo) -> None:
    asyncio.run(eventually(demo.started, 60, "stack.json of `demo`"))
    done = subprocess.run(
        [sys.executable, "-m", "eldercare.cli", "scenario", "run",
         str(SCENARIOS / "sos_button.yaml")],
        env=demo.env, cwd=demo.root, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    upgraded = subprocess.run([sys.executable, "-m", "eldercare.cli", "db", "upgrade"],
                              env=demo.env, cwd=demo.root, capture_output=True, text=True,
                              timeout=60)
    assert upgraded.returncode == 0 and "up to date" in upgraded.stdout, upgraded.stderr


TESTER_COMMANDS = [
    ["scenario", "run", str(SCENARIOS / "sos_button.yaml")],
    ["record", "--out", "recording.jsonl", "--seconds", "1"],
    ["replay", "recording.jsonl"],
    ["simulate", "--seconds", "1"],
]


@pytest.mark.parametrize("left", [None, "dead", "reused"],
                         ids=["no-stack", "stale-stack-file", "pid-of-another-program"])
def test_tester_commands_say_when_no_stack_runs(
    tmp_path: Path, left: str | None, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name in [k for k in os.environ if k.startswith("ELDERCARE_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("ELDERCARE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)
    # main() would bind the process's logging to this test's captured stderr, closed after it
    monkeypatch.setattr(cli.logs, "configure", lambda *args, **kwargs: None)
    other = subprocess.Popen(["sleep", "120"])  # after a reboot, `up`'s pid may be anyone's
    try:
        if left is not None:  # `up` killed with SIGKILL, or the machine restarted
            pid = other.pid
            if left == "dead":
                gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                                      capture_output=True, text=True, check=True)
                pid = int(gone.stdout)
            (tmp_path / "data").mkdir()
            state.path(tmp_path / "data").write_text(state.StackState(
                pid=pid, started_at=0, console_url="http://127.0.0.1:1/",
                settings={"mqtt_url": "mqtt://127.0.0.1:1"}).model_dump_json())
        for command in TESTER_COMMANDS:
            get_settings.cache_clear()  # the command reads this test's environment
            assert cli.main(command) == 2, command
            said = " ".join(capsys.readouterr().err.split())  # rich wraps long lines
            assert "no running eldercare stack found" in said and "eldercare up" in said, said
    finally:
        other.kill()
        other.wait()
        get_settings.cache_clear()
