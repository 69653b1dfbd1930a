"""Dead letters archived into PostgreSQL (`foundation.deadletter_archive`), against the real
database: each record kept once however often it is read, a record that is not a dead letter
kept too, and text PostgreSQL would refuse (a NUL) kept readable."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import psycopg

from foundation import deadletter_archive
from foundation.config import Settings
from foundation.deadletter import Rejection, dead_letter


async def _archive(settings: Settings, records: list[bytes]) -> int:
    async with await psycopg.AsyncConnection.connect(settings.database_url) as conn, \
            conn.transaction():
        return await deadletter_archive.archive(conn, records)


async def test_a_dead_letter_read_twice_is_kept_once_with_its_original(infra: Settings) -> None:
    source = f"test-{uuid.uuid4().hex[:8]}"
    raw = b'{"msg_id": "x", "bpm": "fast\\u0000"}'
    record = dead_letter(source, "eldercare/c/d/event", raw,
                         Rejection("schema", "bpm: not a number \x00"), datetime.now(UTC))
    assert await _archive(infra, [record]) == 1
    assert await _archive(infra, [record, record]) == 0  # redelivered: nothing new
    rows = deadletter_archive.recent(infra.database_url, 10, source)
    assert len(rows) == 1
    assert bytes(rows[0]["payload"]) == raw and rows[0]["reason"] == "schema"
    assert rows[0]["detail"] == "bpm: not a number \\x00"


async def test_a_record_that_is_not_a_dead_letter_is_kept_as_unreadable(
    infra: Settings,
) -> None:
    junk = f"not a dead letter {uuid.uuid4().hex}".encode()
    assert await _archive(infra, [junk]) == 1
    rows = [r for r in deadletter_archive.recent(infra.database_url, 1000, "unknown")
            if bytes(r["payload"]) == junk]
    assert [r["reason"] for r in rows] == ["unreadable_dead_letter"]
