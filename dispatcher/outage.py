"""The database is down: tell the operator by a path that needs no database.

While PostgreSQL cannot be reached, no incident can be recorded and no step run; alerts wait in
Kafka (the dispatcher commits an alert's offset only after recording it). This module keeps the
`eldercare_dispatcher_database_up` gauge, waits for the database to answer again, and sends the
configured operator number (`ELDERCARE_OPERATOR_PHONE`) one SMS when an outage starts and one when
it ends, through the notification channel (Twilio, or the dry-run channel, which only logs)."""

from __future__ import annotations

import asyncio
import contextlib
import time

from prometheus_client import Gauge

from dispatcher.channels import TwilioChannel, channel_for
from foundation import db, i18n, logs
from foundation.config import Settings

log = logs.get(__name__)

DATABASE_UP = Gauge("eldercare_dispatcher_database_up",
                    "1 while the dispatcher reaches PostgreSQL, 0 during an outage")
PROBE_EVERY_S = 0.5


class DatabaseOutage:
    """One dispatcher process's view of the database: up, or down since when."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.down_since: float | None = None
        self.alarmed = False
        DATABASE_UP.set(1)

    async def wait_until_up(self, stop: asyncio.Event, error: str) -> None:
        """Called when the database failed: alarm once, then probe until it answers (or
        `stop`); on recovery, tell the operator it is over."""
        if self.down_since is None:
            self.down_since = time.monotonic()
            log.error("database unreachable: alerts wait in Kafka", error=error)
        DATABASE_UP.set(0)
        await self._alarm("operator.database_down")
        while not stop.is_set():
            try:
                await db.check(self.settings.database_url)
            except Exception as exc:  # any failure means: still down
                log.debug("database still unreachable", error=str(exc))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), PROBE_EVERY_S)
                continue
            break
        else:
            return
        seconds = round(time.monotonic() - self.down_since)
        log.warning("database reachable again", down_s=seconds)
        DATABASE_UP.set(1)
        if self.alarmed:
            await self._alarm("operator.database_up", seconds=seconds)
        self.down_since, self.alarmed = None, False

    async def alarm_down(self) -> None:
        """The outage alarm alone (a process about to exit because the database is lost)."""
        DATABASE_UP.set(0)
        await self._alarm("operator.database_down")

    async def _alarm(self, key: str, **values: object) -> None:
        if key == "operator.database_down" and self.alarmed:
            return
        body = i18n.t(key, self.settings.language, **values)
        phone = self.settings.operator_phone
        if not phone:
            log.error("operator alarm not sent: ELDERCARE_OPERATOR_PHONE is not set", text=body)
            return
        # A channel of its own, closed at once: a pooled connection left idle through the
        # outage would be stale (reset by the server) when the first call goes out after it.
        channel = channel_for(self.settings, keep_dry_runs=False)
        try:
            sid = await channel.sms(phone, body, None)
        except Exception as exc:  # the alarm must never stop the waiting
            log.error("operator alarm failed", to=phone, error=str(exc))
            return
        finally:
            if isinstance(channel, TwilioChannel):
                await channel.close()
        self.alarmed = True
        log.error("operator alarm sent", to=phone, sid=sid, text=body, dry_run=channel.dry_run)
