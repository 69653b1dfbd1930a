"""Run a labelled stream through the detectors (pure, no Kafka) and score every alert kind:
sensitivity, false alerts per elder-day and detection delay."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from detectors.config import DetectorConfig
from detectors.evaluation.streams import FallMotions, Stream
from detectors.suite import ElderState, Suite, build
from foundation.contracts.alerts import Alert

TICK = timedelta(minutes=5)  # event-time resolution of the timers in the replay


@dataclass
class Detected:
    alert: Alert
    at: datetime     # the event time at which the detectors raised it


def replay(stream: Stream, config: DetectorConfig | None = None) -> list[Detected]:
    """Every alert the detectors raise over the stream, with the (event) time it was raised."""
    suite = Suite(build(config or DetectorConfig()))
    states: dict[str, ElderState] = {e: suite.initial() for e in stream.profiles}
    out: list[Detected] = []
    next_tick: datetime | None = None

    def tick(now: datetime) -> None:
        for elder_id, state in states.items():
            _, alerts, _ = suite.on_timer(state, now, stream.profiles[elder_id].at(now))
            out.extend(Detected(a, now) for a in alerts)

    for event in stream.events:
        if next_tick is None:
            next_tick = event.event_time + TICK
        while event.event_time >= next_tick:
            tick(next_tick)
            next_tick += TICK
        profile = stream.profiles[event.elder_id].at(event.event_time)
        _, alerts, _ = suite.on_event(states[event.elder_id], event, profile)
        out.extend(Detected(a, event.event_time) for a in alerts)
    if next_tick is not None:
        tick(next_tick)
    return out


@dataclass
class KindScore:
    labels: int = 0
    detected: int = 0
    false_alerts: int = 0
    delays_s: list[float] = field(default_factory=list)


def score(stream: Stream, detected: list[Detected]) -> dict[str, Any]:
    """Match alerts to labels; an alert matching no label of an accepted kind is false."""
    kinds: dict[str, KindScore] = {}
    hit: dict[int, float] = {}
    for d in detected:
        if d.at < stream.scored_from:
            continue
        a = d.alert
        ks = kinds.setdefault(a.kind, KindScore())
        candidates = [i for i, label in enumerate(stream.labels)
                      if label.elder_id == a.elder_id and a.kind in label.accept
                      and label.at - timedelta(minutes=1) <= d.at <= label.at + label.window]
        # Prefer a label of this very kind not yet detected, the most recent first.
        candidates.sort(key=lambda i: (stream.labels[i].kind == a.kind, i not in hit,
                                       stream.labels[i].at), reverse=True)
        match = candidates[0] if candidates else None
        if match is None:
            ks.false_alerts += 1
            continue
        label = stream.labels[match]
        if label.kind == a.kind and match not in hit:
            hit[match] = max(0.0, (d.at - label.at).total_seconds())
    for i, label in enumerate(stream.labels):
        ks = kinds.setdefault(label.kind, KindScore())
        ks.labels += 1
        if i in hit:
            ks.detected += 1
            ks.delays_s.append(hit[i])
    elder_days = len(stream.profiles) * stream.scored_days
    rows = []
    for kind, ks in sorted(kinds.items()):
        rows.append({
            "kind": kind, "labels": ks.labels, "detected": ks.detected,
            "sensitivity": round(ks.detected / ks.labels, 3) if ks.labels else None,
            "false_alerts": ks.false_alerts,
            "false_per_elder_day": round(ks.false_alerts / elder_days, 4),
            "median_delay_s": round(statistics.median(ks.delays_s)) if ks.delays_s else None,
            "max_delay_s": round(max(ks.delays_s)) if ks.delays_s else None,
        })
    missed = [{"elder": lb.elder_id, "name": lb.name, "at": lb.at.isoformat()}
              for i, lb in enumerate(stream.labels) if i not in hit]
    return {"elders": len(stream.profiles), "scored_days": stream.scored_days,
            "elder_days": elder_days, "events": len(stream.events), "rows": rows,
            "missed": missed, "traps": len(stream.traps)}


def evaluate(elders: int = 12, scored_days: int = 14, warmup_days: int = 21, seed: int = 7,
             config: DetectorConfig | None = None,
             accel: FallMotions | None = None) -> dict[str, Any]:
    """Generate the labelled streams, replay them, score them (`accel`: see `generate`)."""
    from detectors.evaluation.streams import generate

    stream = generate(elders, scored_days, warmup_days, seed, accel=accel)
    started = time.perf_counter()
    detected = replay(stream, config)
    result = score(stream, detected)
    result["replay_s"] = round(time.perf_counter() - started, 2)
    return result


def format_table(result: dict[str, Any]) -> str:
    """The results as a Markdown table."""
    lines = [
        f"{result['elders']} elders x {result['scored_days']} scored days "
        f"({result['elder_days']} elder-days, {result['events']} events, {result['traps']} traps)",
        "",
        "| alert kind | injected | detected | sensitivity | false alerts | false / elder-day "
        "| median delay | max delay |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        sens = "-" if r["sensitivity"] is None else f"{r['sensitivity']:.0%}"
        med = "-" if r["median_delay_s"] is None else _duration(r["median_delay_s"])
        mx = "-" if r["max_delay_s"] is None else _duration(r["max_delay_s"])
        lines.append(f"| {r['kind']} | {r['labels']} | {r['detected']} | {sens} | "
                     f"{r['false_alerts']} | {r['false_per_elder_day']:.3f} | {med} | {mx} |")
    if result["missed"]:
        lines += ["", "missed: " + ", ".join(f"{m['name']} ({m['elder']})"
                                             for m in result["missed"])]
    return "\n".join(lines)


def _duration(s: float) -> str:
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.0f} min"
