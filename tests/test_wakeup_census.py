"""The idle diagnostic `python -m eldercare.bench.wakeups` counts what it says: event-loop
wake-ups per thread, and timers by the platform code that set them; and it puts asyncio back."""

from __future__ import annotations

import asyncio
import selectors

from eldercare.bench.wakeups import Census


async def _nap_three_times() -> None:
    for _ in range(3):
        await asyncio.sleep(0.01)


def test_the_census_counts_wake_ups_and_who_set_the_timers() -> None:
    census = Census()
    before = (asyncio.BaseEventLoop.call_at, selectors.EpollSelector.select)
    with census.installed():
        census.counting = True
        asyncio.run(_nap_three_times())
        census.counting = False
        asyncio.run(_nap_three_times())  # not counted
    assert (asyncio.BaseEventLoop.call_at, selectors.EpollSelector.select) == before
    setters = {s: n for s, n in census.timers.items() if "_nap_three_times" in s}
    assert list(setters.values()) == [3], census.timers
    assert next(iter(setters)).startswith("MainThread: tests/test_wakeup_census.py:")
    assert census.wakeups["MainThread"] >= 3
