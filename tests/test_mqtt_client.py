"""The platform's MQTT client (foundation.mqtt.Client) against a broker that dies mid-handshake."""

from __future__ import annotations

import asyncio

import aiomqtt
import pytest

from foundation.mqtt import MqttTarget


async def _broker_killed_after_connect() -> tuple[asyncio.Server, int]:
    """A listener that reads the client's CONNECT and then drops the connection, as a broker
    killed (or restarted) between accepting a connection and answering it does."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(16)
        writer.transport.abort()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def test_a_connection_dropped_before_connack_fails_at_once_not_after_the_timeout() -> None:
    """aiomqtt alone waits out its whole timeout here (chaos runs: a device's press held 5 s,
    ingest's reconnect 10 s, each time mosquitto was killed mid-handshake). The platform's
    client fails at once, with a reason, so the caller tries again."""
    server, port = await _broker_killed_after_connect()
    async with server:
        client = MqttTarget.parse(f"mqtt://127.0.0.1:{port}").client(timeout=120)
        with pytest.raises(aiomqtt.MqttError, match="closed the connection before accepting"):
            # Far below the client's timeout: the old behaviour ends in TimeoutError here.
            await asyncio.wait_for(client.__aenter__(), timeout=30)
        # The same client connects again later (its state was reset by the failure).
        with pytest.raises(aiomqtt.MqttError, match="closed the connection before accepting"):
            await asyncio.wait_for(client.__aenter__(), timeout=30)
