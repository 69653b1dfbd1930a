"""The platform's uvicorn server (console, ingest's HTTP gateway, every service's /metrics)
serves, stops at once when asked (not at its next look), and an idle one wakes its event loop
about once a second instead of uvicorn's ten times."""

from __future__ import annotations

import asyncio
import socket

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from eldercare.bench.wakeups import Census
from foundation import http_server
from foundation.http_server import Server


async def _hello(_: Request) -> PlainTextResponse:
    return PlainTextResponse("hello")


def _server() -> tuple[Server, socket.socket, str]:
    sock = socket.create_server(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    app = Starlette(routes=[Route("/", _hello)])
    server = Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    return server, sock, f"http://127.0.0.1:{port}/"


async def _served(url: str) -> str:
    async with httpx.AsyncClient() as client:
        for _ in range(200):  # until it listens
            try:
                return (await client.get(url)).text
            except httpx.ConnectError:
                await asyncio.sleep(0.05)
    raise AssertionError("the server never answered")


async def test_a_server_serves_and_stops_when_asked_not_at_its_next_look(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(http_server, "TICK_S", 3600.0)  # only stop() can end it
    server, sock, url = _server()
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    assert await _served(url) == "hello"
    server.stop()
    await asyncio.wait_for(serving, 30)


def test_an_idle_server_wakes_about_once_a_second() -> None:
    async def idle_for_two_seconds(census: Census) -> None:
        server, sock, url = _server()
        serving = asyncio.create_task(server.serve(sockets=[sock]))
        await _served(url)
        census.counting = True
        await asyncio.sleep(2.0)  # the window counted, not a synchronisation
        census.counting = False
        server.stop()
        await serving

    census = Census()
    with census.installed():
        asyncio.run(idle_for_two_seconds(census))
    # Measured: uvicorn's own server ~40 in two seconds (a look every 0.1 s, each a few
    # selector waits); this one ~6 (a look a second, the test's own sleep, the client's
    # connection closing).
    assert census.wakeups["MainThread"] < 15, census.wakeups
