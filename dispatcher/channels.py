"""Ways to reach people: Twilio voice and SMS, or a dry run that records what would be sent."""

from __future__ import annotations

import logging
import uuid
from typing import Any, Literal, Protocol
from urllib.parse import urlsplit, urlunsplit

import aiohttp
from twilio.base.exceptions import TwilioRestException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.rest import Client

from foundation import logs
from foundation.config import Settings

log = logs.get(__name__)


class Channel(Protocol):
    dry_run: bool

    async def sms(self, to: str, body: str, status_callback: str | None) -> str: ...

    async def call(self, to: str, twiml: str, status_callback: str | None) -> str: ...


class DryRunChannel:
    """Sends nothing. The dispatcher still records every message, marked dry-run."""

    dry_run = True

    async def sms(self, to: str, body: str, status_callback: str | None) -> str:
        return f"DRYRUN-SM{uuid.uuid4().hex}"

    async def call(self, to: str, twiml: str, status_callback: str | None) -> str:
        return f"DRYRUN-CA{uuid.uuid4().hex}"


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
    if isinstance(exc, aiohttp.ClientConnectorError):
        return "retry"
    if isinstance(exc, TimeoutError | aiohttp.ClientError):
        return "unknown"
    return "failed"


def channel_for(settings: Settings) -> Channel:
    """The channel ELDERCARE_NOTIFY names; the settings refuse `twilio` without credentials."""
    if not settings.dry_run:
        return TwilioChannel(settings)
    log.warning(
        "ELDERCARE_NOTIFY=dry-run: calls and SMS are recorded, NOT sent. "
        "Set ELDERCARE_NOTIFY=twilio and the ELDERCARE_TWILIO_* credentials to send for real."
    )
    return DryRunChannel()
