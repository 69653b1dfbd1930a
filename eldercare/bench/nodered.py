"""The Node-RED peer of `bench sos`, measured in the same run: a hand-wired Node-RED flow doing
MQTT -> Twilio-style HTTP POST with nothing durable (`../shared/peers/nodered/bench.py`, set
up once with its `setup.sh`). Its figures go under `baseline.nodered`, the comparison into
`ratios`. Skipped (with a note) when the peer is not installed; `ELDERCARE_BENCH_NODERED` names
its bench.py elsewhere, `ELDERCARE_BENCH_NODERED=off` skips it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from foundation import procs

REPO = Path(__file__).resolve().parents[2]
DEFAULT = REPO.parent / "shared" / "peers" / "nodered" / "bench.py"
FLOOD_S = 12.0  # as long as a series of `bench sos` under load


def _say(msg: str) -> None:
    print(f"[bench sos / node-red] {msg}", file=sys.stderr, flush=True)


def peer() -> Path | None:
    """The peer's bench.py, or None when it is switched off or missing."""
    setting = os.environ.get("ELDERCARE_BENCH_NODERED", "")
    if setting == "off":
        return None
    path = Path(setting) if setting else DEFAULT
    return path if path.exists() else None


def run(presses: int, interval_s: float, rates: list[float], quick: bool) -> dict[str, Any] | None:
    """Run the peer (latency at rest with our spacing, then floods at our rates until one
    fails); its summary figures, or None when it is not available or failed."""
    bench = peer()
    if bench is None:
        _say("not run (no ../shared/peers/nodered/bench.py, or ELDERCARE_BENCH_NODERED=off)")
        return None
    setup = bench.parent / "setup.sh"
    if setup.exists():  # idempotent: installs Node-RED and paho-mqtt once, under ~/.cache
        _say("setting up (once): " + str(setup))
        if subprocess.run(["bash", str(setup)], stdout=sys.stderr, stdin=subprocess.DEVNULL,
                          timeout=600, check=False).returncode != 0:
            _say("setup failed: not run")
            return None
    with tempfile.TemporaryDirectory(prefix="bench-nodered-") as tmp:
        cmd = ["python3", str(bench), "--latency-count", str(presses),
               "--latency-interval-ms", str(round(interval_s * 1000)),
               "--rates", ",".join(str(int(r)) for r in rates),
               "--flood-s", str(FLOOD_S / 2 if quick else FLOOD_S), "--refine", "0",
               "--mqtt-port", str(procs.free_port()), "--sink-port", str(procs.free_port()),
               "--nr-port", str(procs.free_port()), "--results-dir", tmp]
        _say("running " + " ".join(cmd[1:]))
        try:
            done = subprocess.run(cmd, stdout=sys.stderr, stdin=subprocess.DEVNULL,
                                  timeout=900, check=False)
        except subprocess.TimeoutExpired:
            _say("timed out")
            return None
        found = sorted(Path(tmp).glob("*.json"))
        if done.returncode != 0 or not found:
            _say(f"failed (exit {done.returncode})")
            return None
        result = json.loads(found[-1].read_text())
    return summary(result)


def summary(result: dict[str, Any]) -> dict[str, Any]:
    """The peer's figures we compare with, from its results JSON."""
    latency = result.get("latency") or {}
    flood = result.get("flood") or {}
    return {
        "at_rest_p50_ms": latency.get("p50_ms"), "at_rest_p99_ms": latency.get("p99_ms"),
        "max_rate_p99_under_1s": flood.get("max_sustained_rate"),
        "max_rate_is_highest_offered": bool(flood) and flood.get("first_fail") is None,
        "p99_ms_at_10k": flood.get("sos_p99_ms_at_10k"),
        "versions": {k: v for k, v in (result.get("versions") or {}).items()
                     if k in ("node-red", "node", "mosquitto")},
    }


def ratios(ours: dict[str, Any], theirs: dict[str, Any]) -> dict[str, float | None]:
    """Our figures over the peer's (latency: lower is better; rate: higher is better)."""
    def ratio(a: Any, b: Any) -> float | None:
        ok = isinstance(a, int | float) and isinstance(b, int | float) and b
        return round(a / b, 2) if ok else None

    return {
        "p50 at rest / node-red p50": ratio(ours.get("at_rest_p50_ms"),
                                            theirs["at_rest_p50_ms"]),
        "p99 at rest / node-red p99": ratio(ours.get("at_rest_p99_ms"),
                                            theirs["at_rest_p99_ms"]),
        "max rate / node-red max rate": ratio(ours.get("max_rate_p99_under_1s"),
                                              theirs["max_rate_p99_under_1s"]),
    }
