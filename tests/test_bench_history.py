"""`eldercare bench` keeps a history: each run appends its figures (with commit, date, machine
and load average) to a JSON lines file, and `eldercare bench report` plots every figure over the
runs. Run as a user runs it (the CLI in a subprocess) with tiny fake benches (no services)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SOS = '''
import os
def run(quick=False):
    p99 = float(os.environ.get("FAKE_P99", "60"))
    return {"presses": 40, "lost": 0, "p50_ms": 20.0, "p95_ms": 40.0, "p99_ms": p99,
            "max_ms": 80.0, "max_rate_p99_under_1s": 4000, "max_rate_is_highest_offered": True,
            "baseline": {"kafka_produce_consume": {"p50_ms": 2.0}},
            "series": [{"offered_per_s": 0, "p50_ms": 20.0, "p99_ms": p99}],
            "ratios": {"p99 at rest / node-red p99": p99 / 10}}
'''
BROKEN = '''
def run(quick=False):
    raise RuntimeError("broke")
'''


def _cli(root: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    pkg = root / "fakebench"
    if not pkg.exists():
        pkg.mkdir()
        (pkg / "__init__.py").write_text("")
        (pkg / "sos.py").write_text(SOS)
        (pkg / "detect.py").write_text(BROKEN)
    full_env = {**os.environ, "PYTHONPATH": str(root), "ELDERCARE_DATA_DIR": str(root / "data"),
                **env}
    full_env.pop("ELDERCARE_BENCH_HISTORY", None)
    full_env.update(env)
    return subprocess.run(
        [sys.executable, "-m", "eldercare.cli", "bench", *args, "--package", "fakebench",
         "--out", str(root / "out")],
        capture_output=True, text=True, env=full_env, timeout=120, cwd=root,
    )


def _lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_each_run_appends_its_figures_with_commit_machine_and_load(tmp_path: Path) -> None:
    history = tmp_path / "bench-results" / "history.jsonl"  # the default, under the cwd
    assert _cli(tmp_path, "sos", "--quick").returncode == 0
    assert _cli(tmp_path, "sos", FAKE_P99="90").returncode == 0
    first, second = _lines(history)
    assert first["bench"] == "sos" and first["quick"] is True and second["quick"] is False
    assert first["figures"]["p99_ms"] == 60.0 and second["figures"]["p99_ms"] == 90.0
    # nested figures and the bench's own ratios are kept; the per-rate series is not
    assert first["figures"]["baseline.kafka_produce_consume.p50_ms"] == 2.0
    assert first["figures"]["ratio p99 at rest / node-red p99"] == 6.0
    assert not any(k.startswith("series") for k in first["figures"])
    assert "max_rate_is_highest_offered" not in first["figures"]  # a flag, not a figure
    assert first["commit"] and first["date"] and first["machine"]["cores"]
    assert len(first["load_average"]) == 3


def test_a_failed_run_adds_nothing_and_the_setting_relocates_the_file(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere" / "runs.jsonl"
    done = _cli(tmp_path, "detect", ELDERCARE_BENCH_HISTORY=str(elsewhere))
    assert done.returncode != 0
    assert not elsewhere.exists()
    assert _cli(tmp_path, "sos", ELDERCARE_BENCH_HISTORY=str(elsewhere)).returncode == 0
    assert [e["bench"] for e in _lines(elsewhere)] == ["sos"]
    assert not (tmp_path / "bench-results" / "history.jsonl").exists()


def test_report_plots_every_figure_over_the_runs_and_shows_the_change(tmp_path: Path) -> None:
    history = tmp_path / "h.jsonl"
    for p99 in ("60", "120"):
        assert _cli(tmp_path, "sos", "--history", str(history), FAKE_P99=p99).returncode == 0
    with history.open("a") as f:
        f.write('{"bench": "sos", "figures": {"p99_ms": \n')  # a run killed while writing
    page = tmp_path / "report" / "index.html"
    done = _cli(tmp_path, "report", "--history", str(history), "--report-out", str(page))
    assert done.returncode == 0, done.stderr
    text = page.read_text()
    assert "2 runs of 1 benches" in text and "1 unreadable lines skipped" in text
    assert "data:image/png;base64," in text  # one self-contained page
    assert "<td>p99_ms</td><td>60</td><td>120</td><td>+100 %</td>" in text


def test_report_without_history_says_how_to_start(tmp_path: Path) -> None:
    done = _cli(tmp_path, "report")
    assert done.returncode == 0, done.stderr
    page = tmp_path / "bench-results" / "report.html"
    assert "No runs yet" in page.read_text()
