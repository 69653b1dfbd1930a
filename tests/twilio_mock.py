"""The Prism mock of Twilio's own OpenAPI spec, behind a small recording proxy so tests can
assert on what really reached "Twilio" (Prism answers fixed examples and records nothing).

The proxy also keeps Twilio's state, which Prism (stateless) cannot: every Call or Message that
Prism accepted is created with a SID of its own, the request's To/From and the time it arrived,
and `GET .../Calls.json` / `.../Messages.json` (still validated by Prism) answer with the
records that match the query's To and From, newest first, in Prism's page format. A resource
exists from the moment its request arrived (`lag` can hold it back: a request Twilio received
but has not created yet); `delay` only holds the answer."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import uvicorn
from fastapi import FastAPI, Request, Response

from foundation import procs

REPO = Path(__file__).resolve().parents[1]
SPEC = Path(os.environ.get(
    "ELDERCARE_TWILIO_SPEC", REPO.parent / "shared" / "twilio" / "twilio_api_v2010.json"
))


def prism_bin() -> str:
    found = os.environ.get("ELDERCARE_PRISM_BIN") or shutil.which("prism")
    local = REPO / ".cache" / "prism" / "node_modules" / ".bin" / "prism"
    if found:
        return found
    if local.exists():
        return str(local)
    raise RuntimeError("Prism not installed: run `make test` (it installs it into .cache/prism)")


@dataclass
class Recorded:
    method: str
    path: str
    form: dict[str, list[str]]
    status: int
    arrived: float = 0.0  # time.perf_counter() when the request reached the proxy
    query: dict[str, list[str]] = field(default_factory=dict)  # a list request's filters


@dataclass
class Created:
    """A Call or Message "Twilio" created: its resource JSON, listable from `visible` on."""

    kind: str  # "Calls" or "Messages"
    resource: dict[str, Any]
    visible: float  # time.perf_counter()


@dataclass
class TwilioMock:
    """Prism plus the recording proxy; `url` is what ELDERCARE_TWILIO_API_BASE_URL points at."""

    url: str
    requests: list[Recorded] = field(default_factory=list)
    # Statuses to answer instead of Prism, per "To" number, in order: only the test's own
    # numbers fail, whatever other tests' escalations are still calling meanwhile. `fail`
    # answers creates (POST), `fail_lists` list requests (GET: Twilio cannot be asked).
    fail: dict[str, list[int]] = field(default_factory=dict)
    fail_lists: dict[str, list[int]] = field(default_factory=dict)
    # Seconds to hold a request to this "To" number before answering: a slow Twilio (or one
    # queueing under a flood) for the test's own numbers only. `delay` holds creates (POST),
    # `delay_lists` list requests (GET).
    delay: dict[str, float] = field(default_factory=dict)
    delay_lists: dict[str, float] = field(default_factory=dict)
    # Benches: answer a request with Prism's first answer to the same method and path, so
    # Prism (one Node process, a few requests a second on a loaded machine) does not hold the
    # dispatcher's workers and the bench measures the platform, not the mock's queue.
    replay: bool = False
    answers: dict[tuple[str, str], tuple[bytes, int, str | None]] = field(default_factory=dict)
    # Seconds after its request arrived before a Call/Message to this "To" number is listed:
    # a request Twilio has received but not yet created (the race of a dying sender).
    lag: dict[str, float] = field(default_factory=dict)
    created: list[Created] = field(default_factory=list)

    def listed(self, kind: str, to: str | None, from_: str | None) -> list[dict[str, Any]]:
        """What a list request for `kind` (Calls/Messages) answers now: newest first."""
        now = time.perf_counter()
        return [c.resource for c in reversed(self.created)
                if c.kind == kind and c.visible <= now
                and (to is None or c.resource.get("to") == to)
                and (from_ is None or c.resource.get("from") == from_)]

    def lists(self, to: str | None = None) -> list[Recorded]:
        """List requests (GET Calls/Messages), e.g. a recovering dispatcher asking."""
        return [r for r in self.requests if r.method == "GET"
                and (to is None or r.query.get("To") == [to])]

    def calls(self, to: str | None = None) -> list[Recorded]:
        return [r for r in self.requests if r.path.endswith("/Calls.json")
                and r.method == "POST" and (to is None or r.form.get("To") == [to])]

    def messages(self, to: str | None = None) -> list[Recorded]:
        return [r for r in self.requests if r.path.endswith("/Messages.json")
                and r.method == "POST" and (to is None or r.form.get("To") == [to])]


def start(log_dir: Path) -> tuple[TwilioMock, subprocess.Popen[bytes], uvicorn.Server]:
    prism_port, proxy_port = procs.free_port(), procs.free_port()
    prism = procs.spawn(
        [prism_bin(), "mock", "-h", "127.0.0.1", "-p", str(prism_port), str(SPEC)],
        log_dir / "prism.log",
    )
    procs.wait_for_port(prism_port, prism, timeout=60)
    mock = TwilioMock(f"http://127.0.0.1:{proxy_port}")
    app = FastAPI()
    upstream = f"http://127.0.0.1:{prism_port}"
    clients: list[httpx.AsyncClient] = []

    @app.api_route("/{path:path}", methods=["GET", "POST", "DELETE"])
    async def proxy(path: str, request: Request) -> Response:
        arrived = time.perf_counter()
        body = await request.body()
        form = parse_qs(body.decode()) if body else {}
        query = parse_qs(request.url.query)
        to = (form or query).get("To", [""])[0]
        failing = mock.fail if request.method == "POST" else mock.fail_lists
        holding = mock.delay if request.method == "POST" else mock.delay_lists
        if failing.get(to):
            status = failing[to].pop(0)
            await asyncio.sleep(holding.get(to, 0.0))
            mock.requests.append(Recorded(request.method, "/" + path, form, status, arrived,
                                          query))
            failure = {"code": 20500, "message": "mock failure", "status": status}
            return Response(json.dumps(failure), status_code=status,
                            media_type="application/json")
        known = mock.answers.get((request.method, path)) if mock.replay else None
        if known is not None:
            content, status, media = known
        else:
            if not clients:  # one client for the server's life (each new one loads CA files)
                clients.append(httpx.AsyncClient(timeout=60))
            answer = await clients[0].request(
                request.method, f"{upstream}/{path}", content=body,
                params=request.url.query or None,
                headers={k: v for k, v in request.headers.items() if k.lower() != "host"},
            )
            content, status = answer.content, answer.status_code
            media = answer.headers.get("content-type")
            if mock.replay and answer.is_success:
                mock.answers[(request.method, path)] = (content, status, media)
        kind = path.rsplit("/", 1)[-1].removesuffix(".json")
        if 200 <= status < 300 and kind in ("Calls", "Messages"):
            # Twilio's state: created on arrival (held back `lag`), listed by To/From.
            content = _stateful(mock, request.method, kind, content, form, query, arrived)
        await asyncio.sleep(holding.get(to, 0.0))
        mock.requests.append(Recorded(request.method, "/" + path, form, status, arrived, query))
        return Response(content, status_code=status, media_type=media)

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=proxy_port,
                                           log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    return mock, prism, server


def _stateful(mock: TwilioMock, method: str, kind: str, content: bytes,
              form: dict[str, list[str]], query: dict[str, list[str]], arrived: float) -> bytes:
    """Prism's answer to a create or list of `kind`, made stateful (see the module docstring)."""
    answer = json.loads(content)
    if method == "POST":
        prefix = "CA" if kind == "Calls" else "SM"
        sid = prefix + uuid.uuid4().hex
        now = format_datetime(datetime.now(UTC))
        account = answer.get("account_sid", "")
        answer.update({
            "sid": sid, "to": form.get("To", [""])[0], "from": form.get("From", [""])[0],
            "date_created": now, "date_updated": now, "status": "queued",
            "uri": f"/2010-04-01/Accounts/{account}/{kind}/{sid}.json",
        })
        if kind == "Calls":
            answer.update({"start_time": None, "end_time": None, "duration": None,
                           "answered_by": None})
        else:
            answer.update({"body": form.get("Body", [""])[0], "date_sent": None})
        lag = mock.lag.get(answer["to"], 0.0)
        mock.created.append(Created(kind, answer, arrived + lag))
        return json.dumps(answer).encode()
    # A list: the matching records as one page (no next page).
    records = mock.listed(kind, query.get("To", [None])[0], query.get("From", [None])[0])
    size = int(query.get("PageSize", ["50"])[0])
    answer.update({kind.lower(): records[:size], "next_page_uri": None, "end": len(records[:size]),
                   "page": 0, "page_size": size, "start": 0, "previous_page_uri": None})
    return json.dumps(answer).encode()
