"""`python -m eldercare.bench.wakeups SERVICE [--seconds N]`: why an idle service wakes up.

A diagnostic beside `eldercare bench idle`: at 1 % of a core a process gives py-spy a dozen
busy samples a minute, but what it costs is mostly how often its event loops wake up. This runs
one service of the stack (`store`, `detectors`, `dispatcher`, ...) in this process as
`eldercare up` runs it (with its /metrics endpoint unless `--no-metrics`), on an embedded
PostgreSQL and tansu with no traffic, lets it settle, then counts for `--seconds`:

- each thread's event-loop wake-ups (selector waits) per second;
- the timers set per second, by the first frame of the platform's own code that set them
  (`?` when only asyncio and libraries are on the stack: aiokafka's heartbeats and request
  timeouts, psycopg's waits);
- the process's CPU (all threads) as per cent of one core.

Used for docs/benchmarks.md, "Idle, third pass"."""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import selectors
import threading
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

SETTLE_S = 12.0


def _setter() -> str:
    """The innermost frame of the platform's code on the current stack."""
    for frame in reversed(traceback.extract_stack()[:-2]):
        name = frame.filename
        if "site-packages" in name or "/asyncio/" in name or name.endswith(__file__):
            continue
        if "/python3" in name or name.startswith("<"):  # the standard library, frozen
            continue
        return f"{Path(name).parent.name}/{Path(name).name}:{frame.lineno} {frame.name}"
    return "?"


class Census:
    """Counts wake-ups per thread and timers per setter while `counting` is set."""

    def __init__(self) -> None:
        self.counting = False
        self.wakeups: collections.Counter[str] = collections.Counter()
        self.timers: collections.Counter[str] = collections.Counter()

    @contextlib.contextmanager
    def installed(self) -> Iterator[Census]:
        """Count in every event loop and selector of this process while inside."""
        census = self
        call_at = asyncio.BaseEventLoop.call_at
        select = selectors.EpollSelector.select

        def counted_call_at(loop: Any, when: float, callback: Any, *args: Any,
                            context: Any = None) -> Any:
            if census.counting:
                census.timers[f"{threading.current_thread().name}: {_setter()}"] += 1
            return call_at(loop, when, callback, *args, context=context)

        def counted_select(selector: Any, timeout: float | None = None) -> Any:
            if census.counting:
                census.wakeups[threading.current_thread().name] += 1
            return select(selector, timeout)

        setattr(asyncio.BaseEventLoop, "call_at", counted_call_at)  # noqa: B010
        setattr(selectors.EpollSelector, "select", counted_select)  # noqa: B010
        try:
            yield self
        finally:
            setattr(asyncio.BaseEventLoop, "call_at", call_at)  # noqa: B010
            setattr(selectors.EpollSelector, "select", select)  # noqa: B010


async def _count(service: str, settings: Any, seconds: float, census: Census) -> float:
    from eldercare.services import with_endpoint
    from foundation import kafka

    await kafka.ensure_topics(settings)
    stop = asyncio.Event()
    running = asyncio.create_task(with_endpoint(service, settings, stop))
    await asyncio.sleep(SETTLE_S)
    cpu = time.process_time()
    census.counting = True
    await asyncio.sleep(seconds)
    census.counting = False
    cpu = time.process_time() - cpu
    stop.set()
    await asyncio.wait_for(running, 30)
    return cpu


def main(argv: list[str] | None = None) -> int:
    from eldercare.bench.stack import database_and_kafka
    from eldercare.services import SERVICES
    from foundation import observability

    parser = argparse.ArgumentParser(prog="python -m eldercare.bench.wakeups",
                                     description=__doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument("service", choices=SERVICES)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--no-metrics", action="store_true",
                        help="without the service's /metrics endpoint (which `eldercare up` runs)")
    args = parser.parse_args(argv)
    census = Census()
    with census.installed(), database_and_kafka("bench-wakeups-") as infra:
        binds = "" if args.no_metrics else observability.local_binds((args.service,))
        settings = infra.settings.model_copy(update={"metrics_binds": binds})
        cpu = asyncio.run(_count(args.service, settings, args.seconds, census))
    per_s = args.seconds
    print(f"{args.service}: {100 * cpu / per_s:.2f} % of one core over {per_s:g} s")
    for thread, n in census.wakeups.most_common():
        print(f"  wake-ups/s {n / per_s:7.1f}  {thread}")
    for setter, n in census.timers.most_common(25):
        print(f"  timers/s   {n / per_s:7.1f}  {setter}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
