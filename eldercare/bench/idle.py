"""`eldercare bench idle`: the CPU an idle platform burns.

Starts the stack as `eldercare up` runs it (embedded PostgreSQL, tansu, mosquitto; ingest,
detectors, dispatcher, console and store), saves the demo population, sends each demo device's
heartbeat at its catalogue interval (nothing else), lets it settle, then samples the CPU time of
every process over a window (/proc: user + system, with reaped children, so PostgreSQL's
backends count for the postmaster). Figures are per cent of one core; the goal is a total of at
most 3 %. `eldercare up`'s supervisor also looks at the embedded Kafka's size now and then
(eldercare/stack/roll.py): the bench runs those looks in a thread of its own, counted as
"supervisor" (its CPU time; tansu's share is in "kafka"). Baseline: the rest of this bench
process over the same window (sending the heartbeats, answering as the Twilio mock's proxy,
reading /proc), which is not counted in the total."""

from __future__ import annotations

import asyncio
import json
import os
import random
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from devices.catalogue import CATALOGUE
from devices.demo import demo_population
from devices.registry import save
from eldercare.bench.stack import running, start_services
from eldercare.services import SERVICES
from eldercare.stack.roll import Roller
from foundation.config import Settings
from foundation.mqtt import MqttTarget, event_topic

CLK_TCK = os.sysconf("SC_CLK_TCK")


def _say(msg: str) -> None:
    print(f"[bench idle] {msg}", file=sys.stderr, flush=True)


def _stat(pid: int) -> tuple[int, float]:
    """(parent pid, CPU seconds of the process and its reaped children)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = sum(int(f) for f in fields[11:15])  # utime, stime, cutime, cstime
    return int(fields[1]), ticks / CLK_TCK


def tree_cpu_s(root: int) -> float:
    """CPU seconds of `root` and of all its living descendants (PostgreSQL's backends)."""
    parents: dict[int, int] = {}
    own: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parents[int(entry.name)], own[int(entry.name)] = _stat(int(entry.name))
        except (OSError, IndexError, ValueError):  # gone meanwhile
            continue
    total, wanted = 0.0, {root}
    changed = True
    while changed:  # descendants, whatever the order /proc lists them in
        changed = False
        for pid, parent in parents.items():
            if parent in wanted and pid not in wanted:
                wanted.add(pid)
                changed = True
    for pid in wanted:
        total += own.get(pid, 0.0)
    return total


def sample(pids: dict[str, int], seconds: float) -> dict[str, float]:
    """Per cent of one core each process tree used over `seconds`."""
    before = {name: tree_cpu_s(pid) for name, pid in pids.items()}
    t0 = time.monotonic()
    time.sleep(seconds)
    wall = time.monotonic() - t0
    return {name: round(100 * (tree_cpu_s(pid) - before[name]) / wall, 2)
            for name, pid in pids.items()}


class SupervisorLooks(threading.Thread):
    """The supervisor's periodic look at the embedded Kafka (`Roller.due`/`check`, at the
    supervisor's 0.1 s pace), in a thread whose CPU seconds are read with `cpu_s`."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(name="bench-idle-supervisor", daemon=True)
        self.roller = Roller(settings, list(SERVICES), lambda name: None, self._no_roll)
        self.stopping = threading.Event()
        self._cpu_s = 0.0

    @staticmethod
    def _no_roll() -> None:
        raise RuntimeError("an idle stack never fills the broker")

    def run(self) -> None:
        while not self.stopping.is_set():
            if self.roller.due():
                self.roller.check()
            self._cpu_s = time.thread_time()
            self.stopping.wait(0.1)
        self.roller.close()

    def cpu_s(self) -> float:
        """This thread's CPU seconds so far (as of its last round, at most 0.1 s old)."""
        return self._cpu_s


async def _heartbeats(mqtt_url: str, seconds: float, seed: int = 1) -> int:
    """Each demo device's heartbeat: one at start (as a device that just connected), then one
    per catalogue interval, at a random phase. Returns how many were sent."""
    rng = random.Random(seed)
    due: list[tuple[float, str, str, float]] = []
    for c in demo_population():
        for e in c.elders:
            for d in e.devices:
                due.append((0.0, c.id, d.id, float(CATALOGUE[d.kind].heartbeat_interval_s)))
    sent = 0
    start = time.monotonic()
    async with MqttTarget.parse(mqtt_url).client(identifier="bench-idle-heartbeats") as client:
        while time.monotonic() - start < seconds:
            now = time.monotonic() - start
            for n, (at, cid, device, every) in enumerate(due):
                if at <= now:
                    body = {"msg_id": f"hb-{device}-{sent}", "ts": time.time(),
                            "type": "heartbeat", "battery": rng.randint(60, 100)}
                    await client.publish(event_topic(cid, device), json.dumps(body).encode(),
                                         qos=1)
                    sent += 1
                    due[n] = (now + every * (rng.random() if at == 0 else 1), cid, device, every)
            await asyncio.sleep(1.0)
    return sent


def run(quick: bool = False) -> dict[str, Any]:
    """Run the benchmark; returns the figures (see the module docstring)."""
    settle_s, window_s = (15.0, 10.0) if quick else (60.0, 30.0)
    with tempfile.TemporaryDirectory(prefix="bench-idle-") as tmp, running(Path(tmp)) as stack:
        save(stack.settings.database_url, demo_population())
        start_services(stack, SERVICES)
        pids = stack.pids()
        _say(f"stack up ({', '.join(f'{k} {v}' for k, v in pids.items())}); heartbeats only; "
             f"settling {settle_s:.0f} s, then sampling {window_s:.0f} s")
        loop = asyncio.new_event_loop()
        beats = loop.run_in_executor(None, lambda: asyncio.run(_heartbeats(
            stack.settings.mqtt_url, settle_s + window_s + 2)))
        looks = SupervisorLooks(stack.settings)
        looks.start()
        time.sleep(settle_s)
        mine, theirs, t0 = time.process_time(), looks.cpu_s(), time.monotonic()
        per_process = sample(pids, window_s)
        wall = time.monotonic() - t0
        supervisor_s = looks.cpu_s() - theirs
        per_process["supervisor"] = round(100 * supervisor_s / wall, 2)
        floor = round(100 * (time.process_time() - mine - supervisor_s) / wall, 2)
        looks.stopping.set()
        looks.join(10)
        heartbeats = loop.run_until_complete(beats)
        loop.close()
    total = round(sum(per_process.values()), 2)
    _say(f"total {total} % of one core: " + ", ".join(f"{k} {v}" for k, v in per_process.items()))
    return {"total_percent_of_one_core": total, "per_process": per_process,
            "heartbeats_sent": heartbeats, "window_s": window_s, "settle_s": settle_s,
            "goal_percent": 3.0, "baseline": {"bench_process_percent": floor}}
