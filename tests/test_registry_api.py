"""The registry's admin API over HTTP against the running platform: CRUD, validation errors,
search and pagination, masking, and all-or-nothing ledger import (API and CLI)."""

from __future__ import annotations

import asyncio
import io
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from openpyxl import Workbook
from psycopg.rows import dict_row

from devices import ledger_import
from foundation.config import Settings
from foundation.security import Principal
from tests.test_registry_records import resident_id


def _fields(r: httpx.Response) -> dict[str, str]:
    return {str(e["loc"][-1]): e["msg"] for e in r.json()["detail"]}


async def _community(http: httpx.AsyncClient) -> str:
    cid = f"c-{uuid.uuid4().hex[:8]}"
    r = await http.post("/api/v1/communities", json={
        "id": cid, "name": "和平里社区", "district": "东城区", "street": "和平里街道",
        "emergency_line": "010-64211234"})
    assert r.status_code == 201, r.text
    assert r.json()["emergency_line"] == "+861064211234"
    return cid


async def test_elder_contacts_devices_staff_crud(admin_http: httpx.AsyncClient) -> None:
    http = admin_http
    cid = await _community(http)
    eid = f"E-{cid}"
    idn = resident_id("11010119400101123")
    r = await http.post("/api/v1/elders", json={
        "id": eid, "community_id": cid, "name": "李秀英", "id_number": idn,
        "phone": "13812345678", "lives_alone": True, "care_level": "partly_dependent",
        "medical_notes": "高血压"})
    assert r.status_code == 201, r.text
    elder = r.json()
    assert "id_number" not in elder and elder["id_number_masked"] == "*" * 14 + idn[-4:]
    assert elder["phone"] == "+8613812345678" and elder["medical_notes"] == "高血压"
    assert (await http.post("/api/v1/elders", json={
        "id": eid, "community_id": cid, "name": "x"})).status_code == 409

    # Validation errors name the field and say why.
    r = await http.post("/api/v1/elders", json={
        "id": "E/1", "community_id": cid, "name": "王", "care_level": "bedridden",
        "phone": "12345"})
    assert r.status_code == 422
    assert set(_fields(r)) == {"id", "care_level", "phone"}
    r = await http.post("/api/v1/elders", json={"id": "E-x", "community_id": "c-nope",
                                                "name": "王"})
    assert r.status_code == 422 and "no community" in _fields(r)["community_id"]

    # Contacts: E.164, SMS ability from the number, ordered.
    r = await http.post(f"/api/v1/elders/{eid}/contacts", json={
        "priority": 2, "name": "李强", "relation": "儿子", "phone": "010 6421 1235"})
    assert r.status_code == 201, r.text
    landline = r.json()
    assert (landline["phone"], landline["can_sms"], landline["channels"]) == \
        ("+861064211235", False, ["voice"])
    r = await http.post(f"/api/v1/elders/{eid}/contacts", json={
        "priority": 1, "name": "李芳", "relation": "女儿", "phone": "+8613912345678"})
    assert r.status_code == 201 and r.json()["can_sms"] is True
    r = await http.post(f"/api/v1/elders/{eid}/contacts", json={
        "priority": 3, "name": "x", "phone": "+861064211236", "channels": ["sms"]})
    assert r.status_code == 422 and "cannot receive SMS" in r.text
    r = await http.patch(f"/api/v1/contacts/{landline['id']}", json={"phone": "13700001111"})
    assert r.status_code == 200 and r.json()["can_sms"] is True
    assert r.json()["channels"] == ["voice", "sms"]
    contacts = (await http.get(f"/api/v1/elders/{eid}/contacts")).json()
    assert [c["name"] for c in contacts] == ["李芳", "李强"]

    # Devices, staff, away periods.
    r = await http.post("/api/v1/devices", json={
        "id": f"{eid}-bp", "kind": "bp_meter", "elder_id": eid, "room": "卧室",
        "serial": "SN-1", "model": "YE660", "firmware": "1.2"})
    assert r.status_code == 201, r.text
    assert r.json()["heartbeat_interval_s"] == 86400 and r.json()["mqtt"]["password"]
    r = await http.post("/api/v1/devices", json={"id": "d-x", "kind": "toaster",
                                                 "elder_id": eid})
    assert r.status_code == 422 and set(_fields(r)) == {"kind"}
    r = await http.patch(f"/api/v1/devices/{eid}-bp", json={"firmware": "1.3"})
    assert r.json()["firmware"] == "1.3" and r.json()["has_credentials"] is True
    r = await http.patch(f"/api/v1/devices/{eid}-bp", json={"heartbeat_interval_s": None})
    assert r.status_code == 422 and "must not be null" in _fields(r)["heartbeat_interval_s"]
    r = await http.put(f"/api/v1/elders/{eid}/thresholds", json={"sbp_high": 300})
    assert r.status_code == 422 and set(_fields(r)) == {"sbp_high"}
    r = await http.put(f"/api/v1/elders/{eid}/thresholds", json={"sbp_high": 170, "wake_h": 9.5})
    assert r.status_code == 200, r.text
    elder = (await http.get(f"/api/v1/elders/{eid}")).json()
    assert elder["detector_thresholds"] == {"sbp_high": 170, "wake_h": 9.5}
    r = await http.post("/api/v1/staff", json={
        "id": f"{cid}-duty2", "name": "值班员", "phone": "13700002222", "community_id": cid,
        "duty_roster": [{"weekday": 0, "start": "08:00", "end": "20:00"}]})
    assert r.status_code == 201, r.text
    assert r.json()["duty_roster"] == [{"weekday": 0, "start": "08:00:00", "end": "20:00:00"}]
    r = await http.post(f"/api/v1/elders/{eid}/away-periods", json={
        "starts_at": "2026-01-02T00:00:00Z", "ends_at": "2026-01-01T00:00:00Z"})
    assert r.status_code == 422 and "after starts_at" in r.text
    r = await http.post(f"/api/v1/elders/{eid}/away-periods", json={
        "starts_at": "2026-01-01T00:00:00Z", "reason": "住院"})
    assert r.status_code == 201

    full = (await http.get(f"/api/v1/elders/{eid}")).json()
    assert [d["id"] for d in full["devices"]] == [f"{eid}-bp"]
    assert full["away_periods"][0]["reason"] == "住院" and len(full["contacts"]) == 2

    # Search by name and by a contact's phone; deactivation hides from lists.
    found = (await http.get("/api/v1/elders", params={"q": "3912345678"})).json()
    assert [e["id"] for e in found["items"]] == [eid]
    assert (await http.post(f"/api/v1/elders/{eid}/deactivate")).json()["active"] is False
    listed = (await http.get("/api/v1/elders", params={"community_id": cid})).json()
    assert listed["total"] == 0
    assert (await http.post(f"/api/v1/staff/{cid}-duty2/deactivate")).json()["active"] is False
    assert (await http.post(f"/api/v1/communities/{cid}/deactivate")).status_code == 200
    assert (await http.get("/api/v1/elders/E-nobody")).status_code == 404


async def test_pagination(admin_http: httpx.AsyncClient) -> None:
    cid = await _community(admin_http)
    for n in range(5):
        r = await admin_http.post("/api/v1/elders", json={
            "id": f"{cid}-{n}", "community_id": cid, "name": f"张{n}"})
        assert r.status_code == 201
    pages = [(await admin_http.get("/api/v1/elders", params={
        "community_id": cid, "limit": 2, "offset": off})).json() for off in (0, 2, 4)]
    assert [p["total"] for p in pages] == [5, 5, 5]
    assert [e["name"] for p in pages for e in p["items"]] == [f"张{n}" for n in range(5)]


def _ledger(cid: str, tag: str, bad: bool) -> bytes:
    book = Workbook()
    elders = book.active
    assert elders is not None
    elders.title = "elders"
    elders.append(["id", "community_id", "name", "id_number", "phone", "lives_alone"])
    elders.append([f"E-{tag}-1", cid, "赵秀兰", resident_id("11010119450202123"),
                   "13812340001", "是"])
    elders.append([f"E-{tag}-2", cid if not bad else "c-missing", "钱建国", "", "", "否"])
    contacts = book.create_sheet("contacts")
    contacts.append(["elder_id", "priority", "name", "relation", "phone"])
    contacts.append([f"E-{tag}-1", 1, "赵明", "儿子", "13912340001" if not bad else "139"])
    devices = book.create_sheet("devices")
    devices.append(["id", "kind", "elder_id", "room"])
    devices.append([f"D-{tag}-1", "sos_button", f"E-{tag}-1", "卧室"])
    devices.append([f"D-{tag}-2", "smoke_alarm", f"E-{tag}-9" if bad else f"E-{tag}-2", "厨房"])
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


async def _count(settings: Settings, sql: str, *args: Any) -> int:
    async with await psycopg.AsyncConnection.connect(settings.database_url) as conn:
        row = await (await conn.execute(sql, args)).fetchone()
    return int(row[0]) if row else 0


async def test_xlsx_import_is_all_or_nothing(
    admin_http: httpx.AsyncClient, platform: Settings,
) -> None:
    cid = await _community(admin_http)
    tag = uuid.uuid4().hex[:6]
    r = await admin_http.post("/api/v1/import", params={"filename": "ledger.xlsx"},
                              content=_ledger(cid, tag, bad=True))
    assert r.status_code == 422
    assert [(e["sheet"], e["row"], e["field"]) for e in r.json()["detail"]] == [
        ("elders", 3, "community_id"), ("contacts", 2, "phone"), ("devices", 3, "elder_id")]
    assert await _count(platform, "SELECT count(*) FROM elders WHERE id LIKE %s",
                        f"E-{tag}-%") == 0
    r = await admin_http.post("/api/v1/import", params={"filename": "ledger.xlsx"},
                              content=_ledger(cid, tag, bad=False))
    assert r.status_code == 200, r.text
    assert r.json()["imported"] == {"elders": 2, "contacts": 1, "devices": 2}
    assert sorted(m["username"] for m in r.json()["mqtt"]) == [f"device.D-{tag}-1",
                                                               f"device.D-{tag}-2"]
    elder = (await admin_http.get(f"/api/v1/elders/E-{tag}-1")).json()
    assert elder["contacts"][0]["phone"] == "+8613912340001" and elder["lives_alone"] is True


async def test_csv_import_api_and_cli(
    admin_http: httpx.AsyncClient, platform: Settings, tmp_path: Path,
) -> None:
    cid = await _community(admin_http)
    tag = uuid.uuid4().hex[:6]
    bad = (f"编号,社区编号,姓名,电话,照护等级\nE-{tag}-1,{cid},孙玉兰,13812340002,self_care\n"
           f"E-{tag}-2,{cid},,13812340003,self_care\nE-{tag}-3,{cid},周永福,1381,nursing\n")
    r = await admin_http.post("/api/v1/import", params={"filename": "elders.csv"},
                              content=bad.encode())
    assert r.status_code == 422
    assert [(e["row"], e["field"]) for e in r.json()["detail"]] == [
        (3, "name"), (4, "phone"), (4, "care_level")]
    path = tmp_path / "elders.csv"
    path.write_text(bad, encoding="utf-8-sig")
    env = {**os.environ, "ELDERCARE_DATABASE_URL": platform.database_url,
           "ELDERCARE_MQTT_AUTH_DIR": platform.mqtt_auth_dir}
    cli = [sys.executable, "-m", "eldercare.cli", "registry", "import", str(path)]
    done = await asyncio.to_thread(
        subprocess.run, cli, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "elders row 4, care_level" in done.stderr
    assert await _count(platform, "SELECT count(*) FROM elders WHERE id LIKE %s",
                        f"E-{tag}-%") == 0
    path.write_text("\n".join(bad.splitlines()[:2]) + "\n", encoding="utf-8-sig")
    done = await asyncio.to_thread(
        subprocess.run, cli, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert await _count(platform, "SELECT count(*) FROM elders WHERE id LIKE %s",
                        f"E-{tag}-%") == 1


async def test_import_cannot_take_over_another_communitys_records(
    admin_http: httpx.AsyncClient, platform: Settings,
) -> None:
    theirs, mine = await _community(admin_http), await _community(admin_http)
    tag = uuid.uuid4().hex[:6]
    r = await admin_http.post("/api/v1/import", params={"filename": "ledger.xlsx"},
                              content=_ledger(theirs, tag, bad=False))
    assert r.status_code == 200, r.text
    staff = Principal("s-1", "duty_staff", frozenset({mine}), "值班员")
    async with await psycopg.AsyncConnection.connect(platform.database_url,
                                                     row_factory=dict_row) as conn:
        with pytest.raises(ledger_import.LedgerRejected) as info:
            await ledger_import.import_ledger(conn, "ledger.xlsx", _ledger(mine, tag, bad=False),
                                              "", staff)
    assert {(e.sheet, e.row, e.field) for e in info.value.errors} >= {
        ("elders", 2, "id"), ("devices", 2, "id")}
    elder = (await admin_http.get(f"/api/v1/elders/E-{tag}-1")).json()
    assert elder["community_id"] == theirs
