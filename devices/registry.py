"""Writing the registry: communities, elders, contacts, devices, staff (idempotent upserts)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg.rows import DictRow
from psycopg.types.json import Jsonb

from devices.catalogue import CATALOGUE, DeviceKind
from devices.records import ContactIn, DeviceIn, ElderIn

AsyncConn = psycopg.AsyncConnection[DictRow]
Row = dict[str, Any]


@dataclass(frozen=True)
class Contact:
    priority: int
    name: str
    relation: str
    phone: str
    can_sms: bool = True


@dataclass(frozen=True)
class Device:
    id: str
    kind: DeviceKind
    room: str = ""


@dataclass(frozen=True)
class Elder:
    id: str
    community_id: str
    name: str
    address: str
    phone: str = ""
    lives_alone: bool = False
    care_level: str = "self_care"
    contacts: list[Contact] = field(default_factory=list)
    devices: list[Device] = field(default_factory=list)
    # As stored (devices/records.py ElderLocation.stored): WGS-84 home and safe zone, or None.
    home: dict[str, Any] | None = None
    safe_zone: dict[str, Any] | None = None


@dataclass(frozen=True)
class Staff:
    id: str
    community_id: str
    name: str
    phone: str


@dataclass(frozen=True)
class Community:
    id: str
    name: str
    district: str
    street: str
    emergency_line: str = ""
    elders: list[Elder] = field(default_factory=list)
    staff: list[Staff] = field(default_factory=list)


def save(url: str, communities: list[Community]) -> None:
    """Insert or update the whole population in one transaction."""
    with psycopg.connect(url) as conn, conn.transaction():
        for c in communities:
            conn.execute(
                "INSERT INTO communities (id, name, district, street, emergency_line)"
                " VALUES (%s,%s,%s,%s,%s) ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name,"
                " district = EXCLUDED.district, street = EXCLUDED.street,"
                " emergency_line = EXCLUDED.emergency_line",
                (c.id, c.name, c.district, c.street, c.emergency_line),
            )
            for s in c.staff:
                conn.execute(
                    "INSERT INTO staff (id, community_id, name, phone) VALUES (%s,%s,%s,%s)"
                    " ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, phone = EXCLUDED.phone",
                    (s.id, s.community_id, s.name, s.phone),
                )
            for e in c.elders:
                _save_elder(conn, e)


def _save_elder(conn: psycopg.Connection[tuple[object, ...]], e: Elder) -> None:
    conn.execute(
        "INSERT INTO elders (id, community_id, name, address, phone, lives_alone, care_level)"
        " VALUES (%s,%s,%s,%s,%s,%s,%s) ON CONFLICT (id) DO UPDATE SET"
        " community_id = EXCLUDED.community_id, name = EXCLUDED.name,"
        " address = EXCLUDED.address, phone = EXCLUDED.phone,"
        " lives_alone = EXCLUDED.lives_alone, care_level = EXCLUDED.care_level",
        (e.id, e.community_id, e.name, e.address, e.phone, e.lives_alone, e.care_level),
    )
    conn.execute("UPDATE elders SET home = %s, safe_zone = %s WHERE id = %s",
                 (Jsonb(e.home) if e.home else None,
                  Jsonb(e.safe_zone) if e.safe_zone else None, e.id))
    conn.execute("DELETE FROM contacts WHERE elder_id = %s", (e.id,))
    for ct in e.contacts:
        conn.execute(
            "INSERT INTO contacts (elder_id, priority, name, relation, phone, can_sms, channels)"
            " VALUES (%s,%s,%s,%s,%s,%s,%s)",
            (e.id, ct.priority, ct.name, ct.relation, ct.phone, ct.can_sms,
             ["voice", "sms"] if ct.can_sms else ["voice"]),
        )
    for d in e.devices:
        conn.execute(
            "INSERT INTO devices (id, kind, elder_id, room, heartbeat_interval_s)"
            " VALUES (%s,%s,%s,%s,%s) ON CONFLICT (id) DO UPDATE SET kind = EXCLUDED.kind,"
            " elder_id = EXCLUDED.elder_id, room = EXCLUDED.room",
            (d.id, d.kind, e.id, d.room, CATALOGUE[d.kind].heartbeat_interval_s),
        )


# --- Writes of single records (admin API and ledger import share them) -----------------------

_ELDER_COLUMNS = ("id", "community_id", "name", "id_number", "address", "phone", "lives_alone",
                  "care_level", "language", "medical_notes")
_DEVICE_COLUMNS = ("id", "kind", "elder_id", "room", "serial", "model", "firmware",
                   "heartbeat_interval_s")
_CONTACT_COLUMNS = ("elder_id", "priority", "name", "relation", "phone", "can_sms", "channels",
                    "language")


def _upsert(table: str, columns: tuple[str, ...], key: str, replace: bool) -> str:
    cols = ", ".join(columns)
    marks = ", ".join(["%s"] * len(columns))
    if not replace:
        return f"INSERT INTO {table} ({cols}) VALUES ({marks}) ON CONFLICT DO NOTHING RETURNING *"
    sets = ", ".join(f"{c} = EXCLUDED.{c}" for c in columns if c not in key.split(", "))
    return (f"INSERT INTO {table} ({cols}) VALUES ({marks}) ON CONFLICT ({key})"
            f" DO UPDATE SET {sets} RETURNING *")


async def write_elder(conn: AsyncConn, elder: ElderIn, replace: bool = False) -> Row | None:
    """Insert an elder (None if the id exists), or with `replace` insert or update it."""
    sql = _upsert("elders", _ELDER_COLUMNS, "id", replace)
    return await (await conn.execute(sql, [getattr(elder, c) for c in _ELDER_COLUMNS])).fetchone()


async def write_device(conn: AsyncConn, device: DeviceIn, replace: bool = False) -> Row | None:
    """Insert a device (None if the id exists), or with `replace` insert or update it."""
    values = device.model_dump()
    if values["heartbeat_interval_s"] is None:
        values["heartbeat_interval_s"] = CATALOGUE[device.kind].heartbeat_interval_s
    sql = _upsert("devices", _DEVICE_COLUMNS, "id", replace)
    return await (await conn.execute(sql, [values[c] for c in _DEVICE_COLUMNS])).fetchone()


async def write_contact(
    conn: AsyncConn, elder_id: str, contact: ContactIn, replace: bool = False,
) -> Row | None:
    """Insert a contact (None if the priority is taken), or with `replace` insert or update it."""
    values = {"elder_id": elder_id, **contact.model_dump()}
    sql = _upsert("contacts", _CONTACT_COLUMNS, "elder_id, priority", replace)
    return await (await conn.execute(sql, [values[c] for c in _CONTACT_COLUMNS])).fetchone()
