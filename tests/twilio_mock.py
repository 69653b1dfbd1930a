"""The Prism mock of Twilio's own OpenAPI spec, behind a small recording proxy so tests can
assert on what really reached "Twilio" (Prism answers fixed examples and records nothing)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
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


@dataclass
class TwilioMock:
    """Prism plus the recording proxy; `url` is what ELDERCARE_TWILIO_API_BASE_URL points at."""

    url: str
    requests: list[Recorded] = field(default_factory=list)
    # Statuses to answer instead of Prism, per "To" number, in order: only the test's own
    # numbers fail, whatever other tests' escalations are still calling meanwhile.
    fail: dict[str, list[int]] = field(default_factory=dict)
    # Seconds to hold a request to this "To" number before answering: a slow Twilio (or one
    # queueing under a flood) for the test's own numbers only.
    delay: dict[str, float] = field(default_factory=dict)
    # Benches: answer a request with Prism's first answer to the same method and path, so
    # Prism (one Node process, a few requests a second on a loaded machine) does not hold the
    # dispatcher's workers and the bench measures the platform, not the mock's queue.
    replay: bool = False
    answers: dict[tuple[str, str], tuple[bytes, int, str | None]] = field(default_factory=dict)

    def calls(self, to: str | None = None) -> list[Recorded]:
        return [r for r in self.requests if r.path.endswith("/Calls.json")
                and (to is None or r.form.get("To") == [to])]

    def messages(self, to: str | None = None) -> list[Recorded]:
        return [r for r in self.requests if r.path.endswith("/Messages.json")
                and (to is None or r.form.get("To") == [to])]


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

    @app.api_route("/{path:path}", methods=["GET", "POST", "DELETE"])
    async def proxy(path: str, request: Request) -> Response:
        arrived = time.perf_counter()
        body = await request.body()
        form = parse_qs(body.decode()) if body else {}
        to = form.get("To", [""])[0]
        if mock.delay.get(to):
            await asyncio.sleep(mock.delay[to])
        if mock.fail.get(to):
            status = mock.fail[to].pop(0)
            mock.requests.append(Recorded(request.method, "/" + path, form, status, arrived))
            failure = {"code": 20500, "message": "mock failure", "status": status}
            return Response(json.dumps(failure), status_code=status,
                            media_type="application/json")
        known = mock.answers.get((request.method, path)) if mock.replay else None
        if known is not None:
            content, status, media = known
            mock.requests.append(Recorded(request.method, "/" + path, form, status, arrived))
            return Response(content, status_code=status, media_type=media)
        async with httpx.AsyncClient() as client:
            answer = await client.request(
                request.method, f"{upstream}/{path}", content=body,
                headers={k: v for k, v in request.headers.items() if k.lower() != "host"},
            )
        mock.requests.append(Recorded(request.method, "/" + path, form, answer.status_code,
                                      arrived))
        if mock.replay and answer.is_success:
            mock.answers[(request.method, path)] = (
                answer.content, answer.status_code, answer.headers.get("content-type"))
        return Response(answer.content, status_code=answer.status_code,
                        media_type=answer.headers.get("content-type"))

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=proxy_port,
                                           log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    return mock, prism, server
