"""Bench history: every `eldercare bench` run appends its figures to a JSON lines file
(`ELDERCARE_BENCH_HISTORY`, default `bench-results/history.jsonl`), with the commit, date,
machine and load average they were measured with, so figures can be compared over commits."""

from __future__ import annotations

import json
import os
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eldercare.bench.harness import BenchResult, _scalars, ratios


@dataclass(frozen=True)
class Entry:
    """One bench run as stored in the history."""

    bench: str
    date: str
    commit: str
    machine: dict[str, Any]
    load_average: list[float]
    quick: bool
    figures: dict[str, float]

    @property
    def label(self) -> str:
        """Short x-axis label: commit and day, e.g. `473f0ef 11-30`."""
        return f"{self.commit[:7]} {self.date[5:10]}"


def numeric_figures(result: BenchResult) -> dict[str, float]:
    """Every number the bench reported (nested keys joined by dots, the per-rate `series`
    left out), plus the harness's ratios as `ratio <name>`."""
    flat = {key: float(value) for key, value in _scalars("", result.figures)
            if isinstance(value, int | float) and not isinstance(value, bool)}
    flat.update({f"ratio {key}": float(value) for key, value in ratios(result).items()})
    return flat


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages (figures from a loaded machine read lower)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # not available on this platform
        return []


def entry(result: BenchResult, env: dict[str, Any], quick: bool) -> Entry:
    """The history line for one finished bench."""
    machine = {"host": platform.node(), "cpu": env.get("cpu"), "cores": env.get("cores"),
               "memory_gb": env.get("memory_gb")}
    return Entry(result.name, str(env.get("date", "")), str(env.get("git_commit", "unknown")),
                 machine, load_average(), quick, numeric_figures(result))


def append(path: Path, item: Entry) -> None:
    """Add one line to the history file (created with its folder when missing)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(item.__dict__, ensure_ascii=False, sort_keys=True)
    with path.open("a", encoding="utf-8") as f:
        f.write(line + "\n")


def read(path: Path) -> tuple[list[Entry], int]:
    """Every entry in file order, and how many lines could not be read (a run killed while
    writing leaves half a line; it must not hide the rest)."""
    entries: list[Entry] = []
    bad = 0
    if not path.exists():
        return entries, bad
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
            figures = {str(k): float(v) for k, v in dict(raw["figures"]).items()
                       if isinstance(v, int | float) and not isinstance(v, bool)}
            entries.append(Entry(str(raw["bench"]), str(raw.get("date", "")),
                                 str(raw.get("commit", "unknown")), dict(raw.get("machine", {})),
                                 [float(x) for x in raw.get("load_average", [])],
                                 bool(raw.get("quick", False)), figures))
        except (ValueError, KeyError, TypeError):
            bad += 1
    return entries, bad
