"""`eldercare bench`: the harness around the bench modules, run as a user runs it (the CLI in a
subprocess), with tiny fake bench modules standing in for the real ones (no services)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

SOS = '''
import sys
def run(quick=False):
    print("sos progress", file=sys.stderr)
    series = [{"offered_per_s": r, "p50_ms": 20 + r / 100, "p95_ms": 40 + r / 50,
               "p99_ms": 60 + r / 20} for r in (0, 500, 1000)]
    return {"presses": 200 if quick else 400, "lost": 0, "p50_ms": 20.0, "p95_ms": 40.0,
            "p99_ms": 60.0, "max_ms": 80.0, "max_rate_p99_under_1s": 1000,
            "baseline": {"mqtt_rtt_p50_ms": 0.4}, "series": series}
'''
INGEST = '''
def run(quick=False):
    print("stray output on stdout must not reach the JSON")
    return {"raw_receive_per_s": 10000.0, "workers_1_per_s": 2500.0, "workers_2_per_s": 4000.0,
            "baseline": {"raw_receive_per_s": 10000.0}}
'''
DETECT = '''
def run(quick=False):
    raise RuntimeError("detector bench broke")
'''
STORE_WITHOUT_KEYS = '''
def run(quick=False):
    return {"store_per_s": 5.0}
'''


def _fake_benches(root: Path, modules: dict[str, str]) -> None:
    pkg = root / "fakebench"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    for name, source in modules.items():
        (pkg / f"{name}.py").write_text(source)


def _bench(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(root), ELDERCARE_DATA_DIR=str(root / "data"))
    return subprocess.run(
        [sys.executable, "-m", "eldercare.cli", "bench", *args, "--package", "fakebench",
         "--out", str(root / "out")],
        capture_output=True, text=True, env=env, timeout=120, cwd=root,
    )


def _one_json(stdout: str) -> dict[str, Any]:
    body = json.loads(stdout)  # raises unless stdout is exactly one JSON document
    assert isinstance(body, dict)
    return body


def test_all_runs_every_bench_and_tolerates_missing_and_broken_ones(tmp_path: Path) -> None:
    _fake_benches(tmp_path, {"sos": SOS, "ingest": INGEST, "detect": DETECT})
    done = _bench(tmp_path, "all", "--json", "--quick")
    body = _one_json(done.stdout)
    benches = body["benches"]
    assert benches["sos"]["status"] == "ok"
    assert benches["sos"]["figures"]["presses"] == 200  # --quick reached the bench
    assert benches["ingest"]["status"] == "ok"
    assert benches["detect"]["status"] == "failed"
    assert "detector bench broke" in done.stderr
    assert benches["store"]["status"] == "missing"
    assert benches["store"]["exit_code"] != 0 and benches["sos"]["exit_code"] == 0
    assert done.returncode != 0
    assert "stray output" in done.stderr  # a bench's stdout is progress, shown on stderr
    assert "summary:" in done.stderr and "store=missing" in done.stderr
    env = body["environment"]
    for key in ("date", "cpu", "cores", "memory_gb", "python", "packages", "git_commit"):
        assert env[key], key

    out = tmp_path / "out"
    saved = json.loads((out / "sos.json").read_text())
    assert saved["figures"]["p99_ms"] == 60.0 and saved["environment"]["cores"]
    assert saved["quick"] is True
    assert (out / "sos.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (out / "ingest.png").exists()  # no series: no plot
    assert not (out / "store.json").exists()


def test_single_bench_json_has_the_contract_keys_at_the_top(tmp_path: Path) -> None:
    _fake_benches(tmp_path, {"ingest": INGEST})
    done = _bench(tmp_path, "ingest", "--json")
    assert done.returncode == 0, done.stderr
    body = _one_json(done.stdout)
    assert body["workers_2_per_s"] == 4000.0 and body["baseline"]
    assert body["environment"]["python"]
    assert "workers_1_per_s / raw_receive_per_s" in done.stderr  # ratio row in the table


def test_table_without_json_goes_to_stdout(tmp_path: Path) -> None:
    _fake_benches(tmp_path, {"sos": SOS})
    done = _bench(tmp_path, "sos")
    assert done.returncode == 0, done.stderr
    assert "p99_ms" in done.stdout and "max_rate_p99_under_1s" in done.stdout


@pytest.mark.parametrize(("name", "source", "why"), [
    ("store", STORE_WITHOUT_KEYS, "missing keys: raw_copy_per_s, baseline"),
    ("detect", None, "no module fakebench.detect"),
])
def test_a_bench_that_breaks_the_contract_fails_with_the_reason(
    tmp_path: Path, name: str, source: str | None, why: str,
) -> None:
    _fake_benches(tmp_path, {name: source} if source else {})
    done = _bench(tmp_path, name, "--json")
    assert done.returncode != 0
    body = _one_json(done.stdout)
    assert body["status"] in {"failed", "missing"}
    assert why in body["error"]


def test_a_hanging_bench_is_stopped_at_its_timeout(tmp_path: Path) -> None:
    _fake_benches(tmp_path, {"detect": "import time\ndef run(quick=False):\n    time.sleep(600)\n",
                             "store": STORE_WITHOUT_KEYS})
    done = _bench(tmp_path, "all", "--json", "--budget", "8")
    body = _one_json(done.stdout)
    assert body["benches"]["detect"]["status"] == "failed"
    assert "timed out" in body["benches"]["detect"]["error"]
    assert body["benches"]["store"]["status"] == "skipped"  # nothing left of the budget
    assert "budget" in body["benches"]["store"]["error"]
    assert body["seconds"] < 60
