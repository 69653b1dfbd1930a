"""The platform's uvicorn server (the console, ingest's HTTP gateway, every service's /metrics):
the service runner owns the signals, and an idle server wakes once a second, not ten times.

uvicorn's main loop sleeps 0.1 s between looks at `should_exit` (and refreshes the Date header
every tenth look). Each look is a wake-up of the process's event loop: with the /metrics
endpoint of the detectors, dispatcher and store, 10 a second each, more than the store's own
wake-ups at rest (`python -m eldercare.bench.wakeups store`, docs/benchmarks.md). Here the loop
looks once a second and `stop()` ends it at once, so a stop is not slower for it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

import uvicorn

TICK_S = 1.0  # uvicorn's Date header has a resolution of one second anyway


class Server(uvicorn.Server):
    """A uvicorn server that leaves signals alone and wakes once a second; end it with
    `stop()`."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self._waiter: asyncio.Future[None] | None = None

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:  # the service runner owns signals
        yield

    async def main_loop(self) -> None:
        loop = asyncio.get_running_loop()
        counter = 0
        while not await self.on_tick(counter):
            counter = (counter + 10) % 864_000  # every look refreshes the Date header
            # A bare future and one timer: no task per look (asyncio.wait_for makes one).
            self._waiter = waiter = loop.create_future()
            timer = loop.call_later(TICK_S, _settle, waiter)
            try:
                await waiter
            finally:
                timer.cancel()

    def stop(self) -> None:
        """Stop serving (graceful shutdown follows at once). Called in the server's loop."""
        self.should_exit = True
        if self._waiter is not None:
            _settle(self._waiter)


def _settle(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
