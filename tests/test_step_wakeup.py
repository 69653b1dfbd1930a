"""The dispatcher wakes one resting step worker per new step (not all of them, each of which
would query the database for it); a wake-up while every worker is busy is not lost."""

from __future__ import annotations

import asyncio

from dispatcher.service import Wakeup


async def _settle() -> None:
    for _ in range(5):  # let woken tasks run to completion
        await asyncio.sleep(0)


async def test_a_new_step_wakes_exactly_one_resting_worker() -> None:
    wake = Wakeup(3)
    workers = [asyncio.create_task(wake.rest(n, 3600)) for n in range(3)]
    await _settle()
    wake.set()
    await _settle()
    assert sum(w.done() for w in workers) == 1
    wake.set()
    await _settle()
    assert sum(w.done() for w in workers) == 2
    for w in workers:
        w.cancel()
    await asyncio.gather(*workers, return_exceptions=True)


async def test_a_wake_up_while_every_worker_is_busy_is_kept_for_the_next_to_rest() -> None:
    wake = Wakeup(2)
    wake.set()  # nobody resting: both busy running steps
    await asyncio.wait_for(wake.rest(0, 3600), 5)  # returns at once: it looks again
    resting = asyncio.create_task(wake.rest(1, 3600))
    await _settle()
    assert not resting.done()  # the kept wake-up was used once, not forever
    resting.cancel()
    await asyncio.gather(resting, return_exceptions=True)
