"""`eldercare bench compare`: this tree's SOS latency against another commit's, in one run (two
stacks at once, presses alternating), as a user runs it: the CLI in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _compare(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, ELDERCARE_DATA_DIR=str(tmp / "data"))
    return subprocess.run(
        [sys.executable, "-m", "eldercare.cli", "bench", "compare", "--quick", "--json",
         "--out", str(tmp / "out"), "--history", str(tmp / "history.jsonl"), *args],
        capture_output=True, text=True, env=env, timeout=600, cwd=REPO)


def test_compare_presses_both_stacks_and_names_the_commit(tmp_path: Path) -> None:
    done = _compare(tmp_path, "--against", "HEAD")
    assert done.returncode == 0, done.stderr[-3000:]
    body = json.loads(done.stdout)
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True,
                          text=True, check=True).stdout.strip()
    assert body["status"] == "ok" and body["against"] == head
    # Each stack ran its own code: this tree's, and the commit's as extracted.
    assert body["code"]["this"] == str(REPO / "eldercare" / "services.py")
    assert body["code"]["other"] == f"{head[:12]}:eldercare/services.py"
    assert body["presses"] == 40 and body["lost"] == 0 and body["rate_per_s"] == 0
    for side in ("this", "other"):  # every press called, on each stack
        assert body[side]["lost"] == 0 and 0 < body[side]["p50_ms"] <= body[side]["max_ms"]
    assert set(body["ratios"]) == {"p50 this / other", "p95 this / other", "p99 this / other"}
    assert isinstance(body["paired_mean_difference_ms"], float)
    assert (tmp_path / "out" / "compare.json").exists()


def test_compare_refuses_a_commit_that_is_not_there(tmp_path: Path) -> None:
    done = _compare(tmp_path, "--against", "no-such-commit")
    assert done.returncode == 2
    assert "no commit 'no-such-commit'" in done.stderr
    assert done.stdout == ""
