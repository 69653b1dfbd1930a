"""`eldercare bench compare --against REV`: SOS press -> first call request, this tree against
another commit, measured in one run.

On a shared machine the same bench run twice differs by more than most changes do (at rest,
`bench sos` p50 moved 22 -> 34 ms between two runs of the same code, 2026-12-01). So this bench
starts two stacks at once, as `bench sos` starts one (embedded PostgreSQL, tansu, mosquitto,
the Twilio mock; ingest, detectors and dispatcher as child processes): one runs this tree's
services, the other those of `REV` (extracted with `git archive`). Presses alternate between
them, each stack pressed every 250 ms at rest, so both see the same machine at the same moments.
Reported: each side's percentiles, the ratios this / other, and the mean of the paired
differences (press k of this stack minus press k of the other).

Both stacks are migrated with this tree's migrations (`REV` runs on the newer schema, which
only adds to the older one). The press latencies are each stack's own, from just before the MQTT
publish to the call's arrival at its Twilio mock."""

from __future__ import annotations

import asyncio
import contextlib
import io
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from devices.registry import save
from eldercare.bench import sos
from eldercare.bench.stack import REPO, BenchStack, imported_from, running, start_services
from foundation.mqtt import MqttTarget

SERVICES = ("ingest@0", "detectors", "dispatcher")
SIDES = ("this", "other")


def _say(msg: str) -> None:
    print(f"[bench compare] {msg}", file=sys.stderr, flush=True)


def resolve(rev: str) -> str:
    """The commit `rev` names in this repository; ValueError with git's words if none."""
    found = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--verify", "--quiet",
                            f"{rev}^{{commit}}"], capture_output=True, text=True, check=False)
    if found.returncode != 0 or not found.stdout.strip():
        raise ValueError(f"no commit {rev!r} in {REPO}")
    return found.stdout.strip()


@contextlib.contextmanager
def checkout(commit: str) -> Iterator[Path]:
    """The files of `commit`, extracted into a temporary folder for the block."""
    archive = subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", commit],
                             capture_output=True, check=True).stdout
    with tempfile.TemporaryDirectory(prefix="bench-compare-tree-") as tmp:
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            if hasattr(tarfile, "data_filter"):  # Python 3.11.4+
                tar.extractall(tmp, filter="data")
            else:  # our own repository's archive
                tar.extractall(tmp)
        yield Path(tmp)


def run(quick: bool = False, against: str = "HEAD", rate: float = 0.0) -> dict[str, Any]:
    """Press SOS on both stacks, alternating; `against` is the other side's commit; `rate`:
    background heart-rate messages per second on each stack while pressing (as `bench sos`
    sends them)."""
    presses = 40 if quick else 200
    commit = resolve(against)
    with checkout(commit) as tree, tempfile.TemporaryDirectory(prefix="bench-cmp-a-") as ta, \
            tempfile.TemporaryDirectory(prefix="bench-cmp-b-") as tb, \
            running(Path(ta)) as this, running(Path(tb)) as other:
        stacks = {"this": this, "other": other}
        codes = {"this": None, "other": tree}  # the other side's services run REV's code
        populations, sources = {}, {}
        for side, stack in stacks.items():
            populations[side] = sos._population(presses + sos.SPARES)
            save(stack.settings.database_url, [populations[side].community])
            sources[side] = imported_from(stack.settings, codes[side])
            _say(f"{side} stack runs {sources[side]}")
            if side == "other" and not Path(sources[side]).is_relative_to(tree):
                raise RuntimeError(f"the other stack would run {sources[side]}, not {commit}")
            start_services(stack, SERVICES, codes[side])
        # Each side's devices publish an SOS where its code reads alarms.
        alarm = {"this": True, "other": knows_alarm_channel(tree)}
        latencies, lost = asyncio.run(_measure(stacks, populations, presses, rate, alarm))
        # (as a path inside the extracted tree, which goes with the block)
        sources["other"] = f"{commit[:12]}:" + str(Path(sources["other"]).relative_to(tree))
    figures: dict[str, Any] = {"against": commit, "presses": presses, "rate_per_s": rate,
                               "lost": sum(lost.values()), "code": sources}
    for side in SIDES:
        figures[side] = {**sos._pct([x for x in latencies[side] if x is not None]),
                         "lost": lost[side]}
    paired = [a - b for a, b in zip(latencies["this"], latencies["other"], strict=True)
              if a is not None and b is not None]
    figures["paired_mean_difference_ms"] = round(float(np.mean(paired)) * 1000, 2) \
        if paired else None
    figures["baseline"] = {"other": figures["other"]}
    figures["ratios"] = {f"{k} this / other": round(figures["this"][f"{k}_ms"]
                                                     / figures["other"][f"{k}_ms"], 3)
                         for k in ("p50", "p95", "p99")
                         if figures["this"][f"{k}_ms"] and figures["other"][f"{k}_ms"]}
    return figures


def knows_alarm_channel(tree: Path) -> bool:
    """Whether the code in `tree` reads the devices' alarm channel (commits before it take an
    SOS on the event channel only)."""
    mqtt = tree / "foundation" / "mqtt.py"
    return mqtt.exists() and "ALARM_CHANNEL" in mqtt.read_text()


async def _measure(stacks: dict[str, BenchStack], populations: dict[str, sos.Population],
                   presses: int, rate: float = 0.0, alarm: dict[str, bool] | None = None,
                   ) -> tuple[dict[str, list[float | None]], dict[str, int]]:
    """Per side, each press's latency in press order (None: no call within the timeout), and
    how many were lost; `alarm`: per side, whether its presses go on the alarm channel."""
    alarm = alarm or dict.fromkeys(SIDES, True)
    for side in SIDES:
        _say(f"warming up the {side} stack")
        await sos._drained(stacks[side].settings, populations[side],
                           stacks[side].mock.requests, sos.DRAIN_TIMEOUT_S)
    _say(f"{presses} presses on each stack, alternating"
         + (f", under {rate:.0f} msg/s each" if rate else ""))
    pressed: dict[str, list[tuple[str, float]]] = {side: [] for side in SIDES}
    quiet = asyncio.Event()  # ends the background load
    load = [asyncio.create_task(sos._telemetry(stacks[side].settings, populations[side], rate,
                                               quiet)) for side in SIDES]
    if rate:
        await asyncio.sleep(1.0)  # let the load settle before the first press
    async with contextlib.AsyncExitStack() as clients:
        client = {side: await clients.enter_async_context(
            MqttTarget.parse(stacks[side].settings.mqtt_url).client()) for side in SIDES}
        for n in range(presses):
            for side in SIDES if n % 2 == 0 else SIDES[::-1]:  # neither always first
                pop = populations[side]
                pressed[side].append(await sos.press(client[side], pop, pop.community.elders[n],
                                                     alarm[side]))
                await asyncio.sleep(sos.PRESS_INTERVAL_S / 2)
    quiet.set()
    await asyncio.gather(*load)
    latencies: dict[str, list[float | None]] = {}
    lost: dict[str, int] = {}
    for side in SIDES:
        calls = await sos.first_calls(stacks[side].mock.requests, dict(pressed[side]))
        latencies[side] = [calls[to] - t0 if to in calls else None for to, t0 in pressed[side]]
        lost[side] = sum(x is None for x in latencies[side])
    return latencies, lost

