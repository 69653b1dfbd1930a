"""Ways to reach people: Twilio voice and SMS, or a dry run that records what would be sent.

Each channel also answers "what did you send to this number since then?" (`Channel.sent`):
after a crash the dispatcher asks instead of guessing (`dispatcher.recovery`)."""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, Protocol
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import psycopg
from twilio.base.exceptions import TwilioRestException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.rest import Client

from foundation import logs
from foundation.config import Settings

log = logs.get(__name__)


Kind = Literal["call", "sms"]


@dataclass(frozen=True)
class Sent:
    """A call or SMS the provider has: its SID, status (e.g. queued), creation time and, for
    an SMS, its text (None when the provider does not tell)."""

    sid: str
    status: str
    created: datetime
    body: str | None = None


class Channel(Protocol):
    dry_run: bool

    async def sms(self, to: str, body: str, status_callback: str | None) -> str: ...

    async def call(self, to: str, twiml: str, status_callback: str | None) -> str: ...

    async def sent(self, kind: Kind, to: str, since: datetime) -> list[Sent]:
        """Calls or SMS to `to` the provider created at or after `since`, newest first;
        raises when the provider cannot be asked."""
        ...


class DryRunChannel:
    """Sends nothing. The dispatcher still records every message, marked dry-run.

    With a `database_url` it also keeps what it "sent" (table `dry_run_sent`, migration 0019),
    so it answers `sent` as Twilio would and crash recovery behaves the same in a dry run;
    without one (a unit test) it remembers in memory."""

    dry_run = True

    def __init__(self, database_url: str | None = None) -> None:
        self._url = database_url
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._lock = asyncio.Lock()
        self._memory: list[tuple[Kind, str, Sent]] = []

    async def sms(self, to: str, body: str, status_callback: str | None) -> str:
        return await self._send("sms", to, f"DRYRUN-SM{uuid.uuid4().hex}")

    async def call(self, to: str, twiml: str, status_callback: str | None) -> str:
        return await self._send("call", to, f"DRYRUN-CA{uuid.uuid4().hex}")

    async def sent(self, kind: Kind, to: str, since: datetime) -> list[Sent]:
        if self._url is None:
            return [s for k, n, s in reversed(self._memory)
                    if k == kind and n == to and s.created >= since]
        rows = await self._execute(
            "SELECT sid, created_at FROM dry_run_sent WHERE kind = %s AND to_number = %s"
            " AND created_at >= %s ORDER BY created_at DESC LIMIT 20", (kind, to, since))
        return [Sent(str(sid), "queued", created) for sid, created in rows]

    async def _send(self, kind: Kind, to: str, sid: str) -> str:
        if self._url is None:
            self._memory.append((kind, to, Sent(sid, "queued", datetime.now(UTC))))
        else:
            await self._execute("INSERT INTO dry_run_sent (sid, kind, to_number)"
                                " VALUES (%s, %s, %s)", (sid, kind, to))
        return sid

    async def _execute(self, sql: str, args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        """One statement on this channel's own autocommit connection (opened on first use,
        dropped when lost: a failed send is retried, as with no connection to Twilio)."""
        assert self._url is not None
        async with self._lock:
            try:
                if self._conn is None or self._conn.closed:
                    self._conn = await psycopg.AsyncConnection.connect(
                        self._url, autocommit=True, connect_timeout=2)
                cur = await self._conn.execute(sql, args)
                return await cur.fetchall() if cur.description else []
            except psycopg.OperationalError:
                if self._conn is not None:
                    await self._conn.close()
                self._conn = None
                raise

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()


_SDK_LOG = logging.getLogger("twilio.async_http_client")


class _BaseUrlHttpClient(AsyncTwilioHttpClient):  # type: ignore[misc]
    """twilio-python has no base-URL option: swap scheme and host, keep the path."""

    def __init__(self, base_url: str, **kw: Any) -> None:
        # The SDK logs every request, its headers and the answer's at INFO (12 lines a call:
        # 93 % of the dispatcher's log in a flood, and CPU a backlog of calls after a restart
        # waits for); the dispatcher logs each step itself.
        _SDK_LOG.setLevel(logging.WARNING)
        super().__init__(pool_connections=False, logger=_SDK_LOG, **kw)
        # Pooled connections idle for 4 s are closed by us, before a server drops them (uvicorn
        # after 5 s): a request sent on a connection the server has closed fails with
        # "connection reset", which is an "unknown" failure (never retried): a call lost.
        self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(keepalive_timeout=4))
        parts = urlsplit(base_url)
        self._scheme, self._netloc = parts.scheme, parts.netloc

    async def request(self, method: str, url: str, *args: Any, **kw: Any) -> Any:
        u = urlsplit(url)
        url = urlunsplit((self._scheme, self._netloc, u.path, u.query, u.fragment))
        return await super().request(method, url, *args, **kw)


class TwilioChannel:
    """The official twilio SDK, async."""

    dry_run = False

    def __init__(self, settings: Settings) -> None:
        self._http = _BaseUrlHttpClient(settings.twilio_api_base_url,
                                        timeout=settings.dispatcher_twilio_timeout_s)
        self._client = Client(
            settings.twilio_account_sid, settings.twilio_auth_token, http_client=self._http
        )
        self._from = settings.twilio_from_number

    async def sms(self, to: str, body: str, status_callback: str | None) -> str:
        kw: dict[str, Any] = {"to": to, "from_": self._from, "body": body}
        if status_callback:
            kw["status_callback"] = status_callback
        msg = await self._client.messages.create_async(**kw)
        return str(msg.sid)

    async def call(self, to: str, twiml: str, status_callback: str | None) -> str:
        kw: dict[str, Any] = {
            "to": to, "from_": self._from, "twiml": twiml, "machine_detection": "Enable",
        }
        if status_callback:
            kw["status_callback"] = status_callback
        call = await self._client.calls.create_async(**kw)
        return str(call.sid)

    async def sent(self, kind: Kind, to: str, since: datetime) -> list[Sent]:
        # No date filter in the query: Twilio filters calls by StartTime (a whole day, and
        # empty while a call is still queued) and messages by DateSent (empty while queued).
        # The newest 20 from our number to theirs, newest first, are filtered here instead.
        listing = self._client.calls if kind == "call" else self._client.messages
        found = await listing.list_async(to=to, from_=self._from, limit=20)
        return [Sent(str(r.sid), str(getattr(r.status, "value", r.status) or ""),
                     r.date_created, getattr(r, "body", None))
                for r in found if r.date_created is not None and r.date_created >= since]

    async def close(self) -> None:
        await self._http.close()


Failure = Literal["retry", "unknown", "failed"]


def failure_kind(exc: BaseException) -> Failure:
    """How a failed Twilio request may be handled.

    "retry": Twilio answered 429/5xx or the connection was never made, so nothing was created.
    "unknown": the request may have reached Twilio (timeout, connection lost mid-request).
    "failed": Twilio refused it for good (4xx: bad number, bad request)."""
    if isinstance(exc, TwilioRestException):
        return "retry" if exc.status == 429 or exc.status >= 500 else "failed"
    if isinstance(exc, aiohttp.ClientConnectorError | psycopg.OperationalError):
        return "retry"  # the dry run's record not written: nothing was "sent"
    if isinstance(exc, TimeoutError | aiohttp.ClientError):
        return "unknown"
    return "failed"


def channel_for(settings: Settings, keep_dry_runs: bool = True) -> Channel:
    """The channel ELDERCARE_NOTIFY names; the settings refuse `twilio` without credentials.
    `keep_dry_runs=False`: a dry run remembers in memory only (the operator alarm about the
    database being down must not need the database)."""
    if not settings.dry_run:
        return TwilioChannel(settings)
    log.warning(
        "ELDERCARE_NOTIFY=dry-run: calls and SMS are recorded, NOT sent. "
        "Set ELDERCARE_NOTIFY=twilio and the ELDERCARE_TWILIO_* credentials to send for real."
    )
    return DryRunChannel(settings.database_url if keep_dry_runs else None)
