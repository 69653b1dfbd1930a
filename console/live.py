"""The console's live stream (SSE): one shared LISTEN connection per console process fans the
incident timeline out to every open stream.

One PostgreSQL connection per stream ran the database out of connections at about a hundred
open tabs; now a stream costs a queue. The fan-out reads each batch of new timeline rows once and
hands every stream the rows of its communities; once per wake-up it checks, in one query, that
every stream's session is still live (a logout or an expired shift ends the stream). Each staff
login may hold ELDERCARE_CONSOLE_STREAMS_PER_USER streams; one more is refused with 429. The
family page's streams (`family_routes`) ride the same fan-out, each for one incident."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import psycopg
import structlog
from fastapi import APIRouter, HTTPException, Request
from sse_starlette.sse import EventSourceResponse
from starlette.background import BackgroundTask

from console import queries
from foundation import db
from foundation.security import SESSION_COOKIE, CurrentPrincipal, Principal, token_hash

log = structlog.get_logger("console.live")
router = APIRouter()

SAFETY_NET_S = 5.0  # re-read even without NOTIFY: a notification lost in a reconnect
QUEUE_ROWS = 10_000  # a stream this far behind is ended; its browser reconnects and catches up
ENDED, OVERFLOW = "logged_out", "overflow"

_NEW_ROWS = """
SELECT t.id, t.incident_id, t.at, t.kind, t.detail, i.community_id
FROM incident_timeline t JOIN incidents i ON i.id = t.incident_id
WHERE t.id > %s ORDER BY t.id LIMIT 1000
"""
_LIVE_SESSIONS = """
SELECT s.token_hash FROM staff_sessions s JOIN staff_accounts a ON a.username = s.username
WHERE s.token_hash = ANY(%s) AND s.expires_at > now() AND a.active
"""


class TooManyStreams(Exception):
    """This login already holds its share of live streams."""


@dataclass(eq=False)
class Subscriber:
    """One open stream: whose, and the rows (or an end marker) waiting to be sent."""

    principal: Principal
    session: str | None  # SHA-256 of the staff session token; None: a family link's stream
    start: int  # rows after this id reach the queue
    incident_id: str | None = None  # only this incident's rows (a family link's stream)
    queue: asyncio.Queue[dict[str, Any] | str] = field(
        default_factory=lambda: asyncio.Queue(QUEUE_ROWS))


class Fanout:
    """The one LISTEN connection of this process and the streams it feeds."""

    def __init__(self, url: str, pool: db.Pool, per_user: int) -> None:
        self.url, self.pool, self.per_user = url, pool, per_user
        self.subscribers: set[Subscriber] = set()
        self.last = 0  # newest timeline id handed out

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Fan out while the app runs (the pool must be open)."""
        async with self.pool.connection() as conn:
            self.last = await queries.last_timeline_id(conn)
        task = asyncio.create_task(self._run(), name="console-live-fanout")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def subscribe(self, principal: Principal, token: str | None,
                  incident_id: str | None = None) -> Subscriber:
        """A new stream; raises TooManyStreams beyond the per-user cap. Without a staff session
        `token` (a family link, which its stream checks itself) it is never ended here."""
        held = sum(1 for s in self.subscribers if s.principal.staff_id == principal.staff_id)
        if held >= self.per_user:
            raise TooManyStreams(principal.staff_id)
        sub = Subscriber(principal, token_hash(token) if token is not None else None,
                         self.last, incident_id)
        self.subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        self.subscribers.discard(sub)

    async def _run(self) -> None:
        while True:
            try:
                async with await db.ListenConnection.connect(
                    self.url, autocommit=True,
                ) as listener:
                    await listener.execute("LISTEN incident_timeline")
                    while True:
                        await self._deliver()
                        await self._end_dead_sessions()
                        async for _ in listener.notifies(timeout=SAFETY_NET_S, stop_after=1):
                            break
            except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                # The database went away: streams stay open and catch up once it is back.
                log.warning("live stream listener lost; reconnecting", error=str(exc))
                await asyncio.sleep(1.0)

    async def _deliver(self) -> None:
        """Hand every new timeline row to the streams that may see its community."""
        while True:
            async with self.pool.connection() as conn:
                rows = await (await conn.execute(_NEW_ROWS, (self.last,))).fetchall()
            for row in rows:
                self.last = row["id"]
                for sub in list(self.subscribers):
                    if sub.principal.can_see(row["community_id"]) and (
                            sub.incident_id in (None, str(row["incident_id"]))):
                        self._put(sub, dict(row))
            if len(rows) < 1000:
                return

    async def _end_dead_sessions(self) -> None:
        hashes = sorted({s.session for s in self.subscribers if s.session is not None})
        if not hashes:
            return
        async with self.pool.connection() as conn:
            live = {r["token_hash"] for r in await (await conn.execute(
                _LIVE_SESSIONS, (hashes,))).fetchall()}
        for sub in list(self.subscribers):
            if sub.session is not None and sub.session not in live:
                self._put(sub, ENDED)

    def _put(self, sub: Subscriber, item: dict[str, Any] | str) -> None:
        try:
            sub.queue.put_nowait(item)
        except asyncio.QueueFull:
            self.unsubscribe(sub)
            sub.queue.get_nowait()  # room for the end marker
            sub.queue.put_nowait(OVERFLOW)
            return
        if isinstance(item, str):
            self.unsubscribe(sub)


def _json(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, default=str)


@router.get("/api/v1/stream")
async def stream(
    request: Request, principal: CurrentPrincipal, after: int | None = None,
) -> EventSourceResponse:
    """Timeline rows of the caller's communities as written; a reconnecting client catches up
    from Last-Event-ID. The stream ends when the session does (logout or expiry)."""
    fanout: Fanout = request.app.state.streams
    header = request.headers.get("last-event-id")
    start = int(header) if header and header.isdigit() else after
    try:
        sub = fanout.subscribe(principal, request.cookies.get(SESSION_COOKIE, ""))
    except TooManyStreams:
        raise HTTPException(429, f"at most {fanout.per_user} live streams per login: close"
                                 " another console tab first") from None
    return EventSourceResponse(_events(fanout, sub, start), ping=10,
                               background=BackgroundTask(fanout.unsubscribe, sub))


async def _events(
    fanout: Fanout, sub: Subscriber, after: int | None,
) -> AsyncIterator[dict[str, str]]:
    try:
        last = sub.start if after is None else after
        yield {"event": "hello", "data": _json({"last_event_id": last}), "id": str(last)}
        while after is not None:  # catch up from the client's last event, then go live
            async with fanout.pool.connection() as conn:
                rows = await queries.timeline_since(conn, last, sub.principal)
            for row in rows:
                last = row["id"]
                yield {"event": "timeline", "id": str(last), "data": _json(row)}
            if len(rows) < 1000:
                break
        while True:
            item = await sub.queue.get()
            if item == ENDED:
                yield {"event": "logged_out", "data": "{}"}
                return
            if item == OVERFLOW:
                return
            assert isinstance(item, dict)
            if item["id"] > last:  # the catch-up may already have sent it
                last = item["id"]
                yield {"event": "timeline", "id": str(last), "data": _json(item)}
    finally:
        fanout.unsubscribe(sub)
