"""The `detectors` service: the engine over every event, and the priority lane.

The lane is an engine of its own consumer group (`engine.URGENT_GROUP`) over `kafka.URGENT`,
running the detectors that alert on an urgent event by itself (`suite.PRIORITY_LANE`). An SOS
is judged there as soon as ingest has it, however much telemetry the first engine still has to
read (at 10,000 msg/s on 2 cores it fell behind by seconds: 3 of 50 presses had no call within
30 s). The first engine leaves such events to the lane (`Suite.on_event`, `on_lane`); events
written to Kafka without the lane (a replay straight into the events topic) are judged there.

The lane runs on a thread with its own event loop. On the service's loop it waited for the first
engine's batches: after a roll of the embedded Kafka, its partition assignment (a few database
reads) took 0.8-1 s while the first engine worked through the backlog, and presses made then were
called 2.0-2.4 s after they were pressed (`eldercare bench soak`). On its own thread it waits at
most for Python's thread switch interval. If either engine fails, both stop and the service
exits (the supervisor restarts it)."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading

from detectors.config import DetectorConfig
from detectors.engine import URGENT_GROUP, Engine
from detectors.suite import priority_lane
from foundation import kafka, logs
from foundation.config import Settings

log = logs.get(__name__)

# Urgent events wait for no fetch window on the lane (the first engine's is longer: it carries
# no SOS). Only the platform's ingest writes the lane, and it announces every record: the
# resting consumer's looks are a safety net there (each costs the broker a request).
LANE_FETCH_MAX_WAIT_MS = 5
LANE_REST_PROBE_S = 5.0
# The lane's thread waits for the first engine's to let go of the interpreter, which a busy
# thread does every switch interval (Python's default: 5 ms), several times per SOS. Shorter
# here: `eldercare bench sos` at 10,000 msg/s, three alternating pairs of 50 presses
# (2026-12-01): p50 / p99 47.7 / 99.5 ms at 5 ms, 44.9 / 84.1 ms at 0.5 ms. Only a thread that
# asks for the interpreter makes the busy one switch, and the lane asks only around urgent
# events: the first engine's throughput does not pay for it.
LANE_SWITCH_INTERVAL_S = 0.0005


def lane_config(config: DetectorConfig) -> DetectorConfig:
    """The priority lane's engine settings, from the first engine's."""
    return config.model_copy(update={"group": URGENT_GROUP, "topic": kafka.URGENT,
                                     "fetch_max_wait_ms": LANE_FETCH_MAX_WAIT_MS,
                                     "rest_probe_s": LANE_REST_PROBE_S,
                                     "profiles_ahead": True})


class LaneThread(threading.Thread):
    """The priority lane's engine on a thread and event loop of its own."""

    def __init__(self, settings: Settings, config: DetectorConfig) -> None:
        super().__init__(name="priority-lane", daemon=True)
        self.settings = settings
        self.config = config
        self.error: BaseException | None = None
        self.started_loop = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None

    def run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # handed to the service's loop, which stops and raises it
            self.error = exc
        finally:
            self.started_loop.set()

    async def _main(self) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        self.started_loop.set()
        await Engine(self.settings, self.config, priority_lane(self.config)).run(self._stop)

    def stop(self) -> None:
        """Ask the lane's engine to stop (from any thread; idempotent)."""
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):  # its loop closed meanwhile: stopped
                self._loop.call_soon_threadsafe(self._stop.set)


async def run(settings: Settings, stop: asyncio.Event) -> None:
    """The `detectors` service (see the module docstring)."""
    config = DetectorConfig()
    sys.setswitchinterval(LANE_SWITCH_INTERVAL_S)
    lane = LaneThread(settings, lane_config(config))
    lane.start()
    await asyncio.to_thread(lane.started_loop.wait)
    first = asyncio.create_task(Engine(settings, config).run(stop))
    lane_over = asyncio.create_task(asyncio.to_thread(lane.join))
    lane_failed = False
    try:
        await asyncio.wait({first, lane_over}, return_when=asyncio.FIRST_COMPLETED)
        if lane_over.done() and not stop.is_set():
            lane_failed = True
            log.error("priority lane stopped: the detectors service stops", exc_info=lane.error)
            stop.set()  # the first engine stops cleanly (its last checkpoint)
    finally:
        lane.stop()
        await asyncio.gather(first, lane_over, return_exceptions=True)
    if lane.error is not None:
        raise lane.error
    first.result()  # its failure, if it failed
    if lane_failed:
        raise RuntimeError("the priority lane stopped on its own")
