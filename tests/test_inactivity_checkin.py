"""Unusual inactivity starts with a quiet check-in: the elder is called first ("press 1 if you
are well"), the family and staff only if nobody pressed 1 within two minutes. A lie-in costs
the elder a phone call by the bed, not the family a fright."""

from __future__ import annotations

import dataclasses
import uuid

import psycopg

from devices.registry import save
from foundation import db
from foundation.contracts.alerts import Severity
from tests.conftest import make_community
from tests.test_emergency_semantics import (  # noqa: F401 (the module's database fixtures)
    _alert,
    _due_now,
    _record,
    _rows,
    conn,
    url,
)


async def test_unusual_inactivity_calls_the_elder_before_the_family(
    url: str, conn: db.Connection,  # noqa: F811
) -> None:
    c = make_community()
    elder = dataclasses.replace(c.elders[0], phone=f"+86139{uuid.uuid4().int % 10**8:08d}")
    c = dataclasses.replace(c, elders=[elder])
    save(url, [c])
    incident = await _record(conn, _alert(c, "inactivity", Severity.HIGH))

    # Now: the console and the call to the elder, nobody else.
    assert await _due_now(conn, incident) == [("console", "console"), ("call", "elder")]
    # The family comes next, two minutes later, unless the elder pressed 1.
    steps = await _rows(conn, "SELECT action, target, wait_s FROM escalation_steps"
                        " WHERE incident_id = %s AND purpose = 'ladder' ORDER BY seq", incident)
    kinds = [(r["action"], r["target"].get("kind", "")) for r in steps]
    assert kinds[2] == ("sms", "contact"), kinds
    assert steps[2]["wait_s"] >= 120
    with psycopg.connect(url) as pg:
        row = pg.execute("SELECT severity FROM incidents WHERE id = %s", (incident,)).fetchone()
    assert row is not None and row[0] == "high"
