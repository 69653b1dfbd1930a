"""Issue 15, the console's rows, each tried as an attacker would against the running platform
(or real PostgreSQL); every test fails if its attack works again."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest
from psycopg.types.json import Jsonb

from console.accounts import Account, create_account
from devices.readings import partitions
from devices.registry import Community, save
from foundation import security
from foundation.config import Settings, child_env
from tests.conftest import make_community, staff_login
from tests.test_console_access import duty_account, from_address, press_sos

ID_NUMBER = "11010519491231002X"  # a valid check digit (GB 11643)


def sql(settings: Settings, query: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        cur = conn.execute(query, params)
        return cur.fetchall() if cur.description else []


def saved_community(settings: Settings, **kwargs: Any) -> Community:
    c = make_community(**kwargs)
    save(settings.database_url, [c])
    return c


def cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "eldercare.cli", *args], env=child_env(settings),
                          capture_output=True, text=True, timeout=120)


async def audit_rows(admin: httpx.AsyncClient, **filters: str) -> list[dict[str, Any]]:
    r = await admin.get("/api/v1/audit", params={**filters, "limit": 500})
    assert r.status_code == 200, r.text
    entries: list[dict[str, Any]] = r.json()["entries"]
    return entries


# --- 1. resident ID numbers -------------------------------------------------------------------

async def test_opening_an_elder_in_the_console_never_shows_the_full_id_number(
    platform: Settings, admin_http: httpx.AsyncClient,
) -> None:
    c = saved_community(platform)
    elder = c.elders[0].id
    sql(platform, "UPDATE elders SET id_number = %s WHERE id = %s", ID_NUMBER, elder)
    username, password = duty_account(platform, c)
    async with httpx.AsyncClient(base_url=platform.public_base_url, timeout=10) as duty:
        await staff_login(duty, username, password)
        for client in (admin_http, duty):
            page = await client.get(f"/api/v1/console/elders/{elder}")
            assert page.status_code == 200
            assert ID_NUMBER not in page.text, "the full ID number is on the elder page"
            assert page.json()["id_number_masked"] == "*" * 14 + ID_NUMBER[-4:]
        assert (await duty.post(f"/api/v1/console/elders/{elder}/reveal-id-number")
                ).status_code == 403, "duty staff cannot reveal the ID number"
    revealed = await admin_http.post(f"/api/v1/console/elders/{elder}/reveal-id-number")
    assert revealed.status_code == 200 and revealed.json()["id_number"] == ID_NUMBER
    actions = [e["action"] for e in await audit_rows(admin_http, object_id=elder)]
    assert actions.count("reveal_id_number") == 1, "each reveal is audited"


# --- 2. the registry API audits every read of personal data and every write -------------------

async def test_reading_an_elder_and_redirecting_its_emergency_calls_leave_audit_rows(
    platform: Settings, admin_http: httpx.AsyncClient, admin_login: tuple[str, str],
) -> None:
    c = saved_community(platform)
    elder = c.elders[0]
    assert (await admin_http.get(f"/api/v1/elders/{elder.id}")).status_code == 200
    contacts = (await admin_http.get(f"/api/v1/elders/{elder.id}/contacts")).json()
    assert (await admin_http.get(f"/api/v1/elders/{elder.id}/readings")).status_code == 200
    found = await admin_http.get("/api/v1/elders", params={"q": elder.contacts[0].phone[-8:]})
    assert [e["id"] for e in found.json()["items"]] == [elder.id]
    first = next(x for x in contacts if x["priority"] == 1)
    attacker_phone = "+8613912345678"
    changed = await admin_http.patch(f"/api/v1/contacts/{first['id']}",
                                     json={"phone": attacker_phone})
    assert changed.status_code == 200, changed.text

    rows = await audit_rows(admin_http, object_id=elder.id, username=admin_login[0])
    seen = {(e["action"], e["detail"].get("what")) for e in rows}
    assert {("view", "record"), ("view", "contacts"), ("view", "readings"),
            ("update", "contact")} <= seen, seen
    update = next(e for e in rows if e["action"] == "update")
    assert update["detail"]["fields"] == ["phone"] and update["detail"]["priority"] == 1
    assert update["community_id"] == c.id and update["client"].startswith("127.0.0.1 ")
    assert attacker_phone not in json.dumps(update), "the log names the field, not the number"
    searches = await audit_rows(admin_http, action="search", username=admin_login[0])
    assert any(elder.id in e["detail"].get("elder_ids", []) for e in searches)


# --- 3. X-Forwarded-For is believed only from configured proxies ------------------------------

async def test_forged_forwarded_addresses_neither_dodge_the_lock_nor_reach_the_audit_log(
    platform: Settings,
) -> None:
    c = saved_community(platform)
    username, _ = duty_account(platform, c)
    real = "127.0.0.1"  # the same host: uvicorn's own default would believe its forwarding
    forged = [f"203.0.113.{n}" for n in range(6)]
    async with from_address(platform, real) as attacker:
        codes = [(await attacker.post(
            "/api/v1/login", json={"username": username, "password": f"guess-{n}"},
            headers={"X-Forwarded-For": forged[n]})).status_code for n in range(6)]
    assert codes == [401] * 4 + [423] * 2, "a fresh forged address per guess dodged the lock"
    clients = [r[0] for r in sql(platform, "SELECT client FROM audit_log WHERE username = %s",
                                 username)]
    assert len(clients) == 6 and all(x.startswith(f"{real} ") for x in clients), clients
    assert not any("203.0.113." in x for x in clients)


# --- 4. live streams share one LISTEN connection, with a per-user cap --------------------------

STREAMS = 500


async def test_five_hundred_live_streams_do_not_exhaust_the_database(
    platform: Settings,
) -> None:
    c = saved_community(platform)
    per_user = platform.console_streams_per_user
    users = [duty_account(platform, c) for _ in range(STREAMS // per_user)]
    clients = [httpx.AsyncClient(base_url=platform.public_base_url, timeout=30,
                                 limits=httpx.Limits(max_connections=per_user + 2))
               for _ in users]
    hello, got = asyncio.Semaphore(0), asyncio.Semaphore(0)

    async def follow(client: httpx.AsyncClient) -> None:
        async with client.stream("GET", "/api/v1/stream", timeout=None) as response:
            assert response.status_code == 200
            kind = ""
            async for line in response.aiter_lines():
                if line.startswith("event:"):
                    kind = line.split(":", 1)[1].strip()
                    if kind == "hello":
                        hello.release()
                elif line.startswith("data:") and kind == "timeline":
                    # A fresh community: its first timeline row is the SOS of this test.
                    assert json.loads(line.split(":", 1)[1])["community_id"] == c.id
                    got.release()
                    return

    async def wait_for(sem: asyncio.Semaphore, n: int, what: str) -> None:
        done = 0

        async def all_of() -> None:
            nonlocal done
            for _ in range(n):
                await sem.acquire()
                done += 1
        try:
            await asyncio.wait_for(all_of(), 120)
        except TimeoutError:
            # How many did says which failed: the fan-out (none) or some streams (a few).
            failed = [t for t in tasks if t.done() and not t.cancelled() and t.exception()]
            raise AssertionError(
                f"{done} of {n} streams got {what} in 120 s; {len(failed)} streams failed"
                + (f", e.g. {failed[0].exception()!r}" if failed else "")) from None

    tasks: list[asyncio.Task[None]] = []
    try:
        for client, (username, password) in zip(clients, users, strict=True):
            await staff_login(client, username, password)
            tasks += [asyncio.create_task(follow(client)) for _ in range(per_user)]
        await wait_for(hello, STREAMS, "its hello")
        listeners = sql(platform, "SELECT count(*) FROM pg_stat_activity"
                                  " WHERE query = 'LISTEN incident_timeline'")[0][0]
        assert listeners == 1, f"{listeners} LISTEN connections for {STREAMS} streams"
        one_more = await clients[0].get("/api/v1/stream")
        assert one_more.status_code == 429 and "streams" in one_more.json()["detail"]

        await press_sos(platform, c)
        await wait_for(got, STREAMS, "the new incident")
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for client in clients:
            await client.aclose()


# --- 5. malformed input and huge bodies ------------------------------------------------------

async def test_nul_bytes_deep_nesting_and_huge_bodies_are_refused_not_crashing(
    platform: Settings, admin_http: httpx.AsyncClient,
) -> None:
    nul_query = await admin_http.get("/api/v1/console/elders", params={"q": "a\x00b"})
    assert nul_query.status_code == 422 and "NUL" in nul_query.text
    assert (await admin_http.get("/api/v1/elders", params={"q": "a\x00"})).status_code == 422
    nul_login = await admin_http.post("/api/v1/login",
                                      json={"username": "a\x00b", "password": "x"})
    assert nul_login.status_code == 422
    nested = "[" * 100_000 + "]" * 100_000
    deep = await admin_http.post("/api/v1/elders", content=nested,
                                 headers={"content-type": "application/json"})
    assert deep.status_code == 422 and "nested" in deep.text
    deep_hook = await admin_http.post("/twilio/sms/inbound", content=nested,
                                      headers={"content-type": "application/json"})
    assert deep_hook.status_code == 422
    nul_hook = await admin_http.post("/twilio/sms/inbound", content=b"Body=1%00&From=x",
                                     headers={"content-type": "application/x-www-form-urlencoded"})
    assert nul_hook.status_code == 422

    big = b"Body=" + b"x" * (platform.console_max_body + 1)
    huge_hook = await admin_http.post(
        "/twilio/sms/inbound", content=big,
        headers={"content-type": "application/x-www-form-urlencoded"})
    assert huge_hook.status_code == 413

    async def chunks() -> Any:  # no Content-Length: the cap counts what arrives
        for _ in range(platform.console_max_import_body // (1 << 20) + 2):
            yield b"x" * (1 << 20)

    huge_import = await admin_http.post("/api/v1/import", params={"filename": "ledger.csv"},
                                        content=chunks())
    assert huge_import.status_code == 413
    assert (await admin_http.get("/healthz")).status_code in (200, 503), "still serving"


# --- 6. API docs ----------------------------------------------------------------------------

async def test_api_docs_are_not_served_to_strangers_or_non_admins(
    platform: Settings, admin_http: httpx.AsyncClient,
) -> None:
    c = saved_community(platform)
    username, password = duty_account(platform, c)
    async with httpx.AsyncClient(base_url=platform.public_base_url, timeout=10) as anon:
        for path in ("/docs", "/openapi.json", "/redoc"):
            assert (await anon.get(path)).status_code in (401, 404), path
        await staff_login(anon, username, password)
        assert (await anon.get("/openapi.json")).status_code == 403
        assert (await anon.get("/docs")).status_code == 403
    spec = await admin_http.get("/openapi.json")
    assert spec.status_code == 200 and "/api/v1/elders" in spec.json()["paths"]
    assert (await admin_http.get("/docs")).status_code == 200


# --- 7. password reset and hashing ----------------------------------------------------------

async def test_a_stolen_session_dies_when_the_password_is_reset(
    platform: Settings, admin_http: httpx.AsyncClient,
) -> None:
    c = saved_community(platform)
    username, password = duty_account(platform, c)
    async with httpx.AsyncClient(base_url=platform.public_base_url, timeout=10) as thief:
        await staff_login(thief, username, password)
        assert (await thief.get("/api/v1/me")).status_code == 200
        reset = await admin_http.post("/api/v1/staff-accounts", json={
            "username": username, "display_name": "值班员", "role": "duty_staff",
            "community_id": c.id, "password": uuid.uuid4().hex})
        assert reset.status_code == 201, reset.text
        assert (await thief.get("/api/v1/me")).status_code == 401, "the old session lives on"


async def test_a_login_flood_cannot_stall_the_event_loop_with_password_hashing(
    infra: Settings, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """argon2 runs in worker threads: the event loop's thread never hashes."""
    from console.app import create_app

    loop_thread = threading.get_ident()
    hashing_threads: list[int] = []
    real = security._hasher

    class Recorder:
        def verify(self, stored: str, password: str) -> bool:
            hashing_threads.append(threading.get_ident())
            return real.verify(stored, password)

        def hash(self, password: str) -> str:
            hashing_threads.append(threading.get_ident())
            return real.hash(password)

    username, password = f"duty-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    c = saved_community(infra)
    create_account(infra.database_url, Account(username, "值班员", "duty_staff",
                                               community_id=c.id), password)
    monkeypatch.setattr(security, "_hasher", Recorder())
    app = create_app(infra)
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://console") as client:
        wrong = [client.post("/api/v1/login", json={"username": username, "password": "no"})
                 for _ in range(3)]
        assert [r.status_code for r in await asyncio.gather(*wrong)] == [401] * 3
        await staff_login(client, username, password)
    assert len(hashing_threads) == 4
    assert loop_thread not in hashing_threads, "argon2 ran on the event loop"


# --- 8. district admins ---------------------------------------------------------------------

async def test_a_district_admin_cannot_see_or_manage_another_district(
    platform: Settings, admin_http: httpx.AsyncClient,
) -> None:
    mine, other = saved_community(platform), saved_community(platform)
    district, far = f"区-{uuid.uuid4().hex[:6]}", f"区-{uuid.uuid4().hex[:6]}"
    sql(platform, "UPDATE communities SET district = %s WHERE id = %s", district, mine.id)
    sql(platform, "UPDATE communities SET district = %s WHERE id = %s", far, other.id)
    other_duty, _ = duty_account(platform, other)
    username, password = f"dadmin-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    made = await admin_http.post("/api/v1/staff-accounts", json={
        "username": username, "display_name": "区管理员", "role": "district_admin",
        "district": district, "password": password})
    assert made.status_code == 201, made.text
    # Something happened in the other district that its audit log records.
    assert (await admin_http.get(f"/api/v1/elders/{other.elders[0].id}")).status_code == 200

    async with httpx.AsyncClient(base_url=platform.public_base_url, timeout=10) as admin:
        me = await staff_login(admin, username, password)
        assert me["community_ids"] == [mine.id]
        communities = (await admin.get("/api/v1/communities", params={"limit": 500})).json()
        assert [x["id"] for x in communities["items"]] == [mine.id]
        stranger = other.elders[0].id
        assert (await admin.get(f"/api/v1/console/elders/{stranger}")).status_code == 404
        assert (await admin.get(f"/api/v1/elders/{stranger}")).status_code == 404
        assert (await admin.get(f"/api/v1/console/elders/{mine.elders[0].id}")
                ).status_code == 200
        grab = await admin.post("/api/v1/communities", json={
            "id": f"c-{uuid.uuid4().hex[:8]}", "name": "别区社区", "district": far})
        assert grab.status_code == 403
        accounts = (await admin.get("/api/v1/staff-accounts")).json()["accounts"]
        assert other_duty not in {a["username"] for a in accounts}
        assert (await admin.post(f"/api/v1/staff-accounts/{other_duty}/unlock")
                ).status_code == 404
        takeover = await admin.post("/api/v1/staff-accounts", json={
            "username": other_duty, "display_name": "x", "role": "duty_staff",
            "community_id": other.id, "password": uuid.uuid4().hex})
        assert takeover.status_code == 403, "reset a password in another district"
        platform_admin = await admin.post("/api/v1/staff-accounts", json={
            "username": f"root-{uuid.uuid4().hex[:6]}", "display_name": "x",
            "role": "district_admin", "password": uuid.uuid4().hex})
        assert platform_admin.status_code == 403, "made itself an admin of every district"
        log = (await admin.get("/api/v1/audit", params={"limit": 500})).json()["entries"]
        assert log and all(e["community_id"] in (mine.id, None) for e in log)
        assert not any(e["community_id"] == other.id for e in log)


# --- 9. privacy: export, erase, retention ---------------------------------------------------

def _incident(settings: Settings, c: Community, status: str, resolved_days_ago: float) -> str:
    elder = c.elders[0]
    resolved = datetime.now(UTC) - timedelta(days=resolved_days_ago)
    row = sql(settings,
              "INSERT INTO incidents (elder_id, community_id, kind, severity, status, event_time,"
              " opened_at, resolved_at, outcome, notes, acknowledged_by) VALUES"
              " (%s,%s,'sos','critical',%s,%s,%s,%s,%s,'女儿说老人摔倒在厨房','王值班')"
              " RETURNING id",
              elder.id, c.id, status, resolved, resolved,
              resolved if status == "resolved" else None,
              "help_sent" if status == "resolved" else None)
    iid = str(row[0][0])
    sql(settings, "INSERT INTO notifications (idempotency_key, incident_id, channel, to_number,"
                  " recipient, body, created_at) VALUES (%s,%s,'sms',%s,'联系人1',%s,%s)",
        uuid.uuid4().hex, iid, elder.contacts[0].phone, f"{elder.name}按下了求助按钮", resolved)
    sql(settings, "INSERT INTO incident_timeline (incident_id, kind, detail) VALUES (%s,"
                  " 'acknowledged', %s)", iid, Jsonb({"who": "王值班",
                                                      "phone": elder.contacts[0].phone}))
    return iid


async def _reading(settings: Settings, c: Community, kind: str, days_ago: float) -> None:
    at = datetime.now(UTC) - timedelta(days=days_ago)
    async with await psycopg.AsyncConnection.connect(settings.database_url,
                                                     autocommit=True) as conn:
        await partitions.ensure(conn, {at.date()})
        await conn.execute(
            "INSERT INTO readings VALUES (%s,%s,%s,%s,%s,%s,%s,%s)",
            (at, c.elders[0].devices[0].id, uuid.uuid4().hex, c.elders[0].id, c.id, kind,
             Jsonb({"lat": 39.9, "lon": 116.4} if kind == "location" else {"bpm": 70}), at))


async def test_an_elder_can_be_exported_and_erased_leaving_only_anonymised_incidents(
    infra: Settings,
) -> None:
    c = saved_community(infra)
    elder = c.elders[0]
    sql(infra, "UPDATE elders SET id_number = %s, medical_notes = '高血压' WHERE id = %s",
        ID_NUMBER, elder.id)
    await _reading(infra, c, "hr", 0)
    iid = _incident(infra, c, "resolved", 1)

    export = cli(infra, "registry", "export", elder.id)
    assert export.returncode == 0, export.stderr
    data = json.loads(export.stdout)
    assert data["elder"]["name"] == elder.name and data["elder"]["id_number"] == ID_NUMBER
    assert {x["phone"] for x in data["contacts"]} == {x.phone for x in elder.contacts}
    assert len(data["readings"]) == 1 and data["incidents"][0]["id"] == iid
    assert data["incidents"][0]["notifications"][0]["to_number"] == elder.contacts[0].phone

    open_one = _incident(infra, c, "open", 0)
    refused = cli(infra, "registry", "erase", elder.id)
    assert refused.returncode == 1 and "open incident" in refused.stderr
    sql(infra, "UPDATE incidents SET status = 'resolved', resolved_at = now() WHERE id = %s",
        open_one)

    erased = cli(infra, "registry", "erase", elder.id)
    assert erased.returncode == 0, erased.stderr
    after = json.loads(cli(infra, "registry", "export", elder.id).stdout)
    held = json.dumps(after, ensure_ascii=False)
    for personal in (elder.name, elder.address, ID_NUMBER, "高血压", "厨房", "王值班",
                     *(x.phone for x in elder.contacts)):
        assert personal not in held, f"{personal!r} is still held after erasure"
    assert after["elder"]["erased_at"] and not after["elder"]["active"]
    assert not (after["contacts"] or after["devices"] or after["readings"])
    kept = {i["id"]: i for i in after["incidents"]}
    assert set(kept) == {iid, open_one}, "incidents are kept for statistics"
    assert kept[iid]["kind"] == "sos" and kept[iid]["outcome"] == "help_sent"
    assert kept[iid]["anonymised_at"] and not kept[iid]["notifications"]
    actions = [r[0] for r in sql(infra, "SELECT action FROM audit_log WHERE object_id = %s"
                                        " ORDER BY id", elder.id)]
    assert actions == ["export", "erase", "export"]


async def test_personal_data_past_its_retention_is_removed_by_maintenance(
    infra: Settings,
) -> None:
    c = saved_community(infra)
    await _reading(infra, c, "location", infra.location_retention_days + 2)
    await _reading(infra, c, "location", 0)
    await _reading(infra, c, "hr", infra.location_retention_days + 2)
    old = _incident(infra, c, "resolved", infra.incidents_retention_days + 1)
    recent = _incident(infra, c, "resolved", infra.notifications_retention_days + 1)
    marker = f"old-{uuid.uuid4().hex[:8]}"
    sql(infra, "INSERT INTO audit_log (username, role, action, at) VALUES (%s, '', 'view',"
               " now() - make_interval(days => %s))", marker, infra.audit_retention_days + 1)

    done = cli(infra, "registry", "maintain-readings")
    assert done.returncode == 0, done.stderr
    kinds = sorted(r[0] for r in sql(infra, "SELECT type FROM readings WHERE elder_id = %s",
                                     c.elders[0].id))
    assert kinds == ["hr", "location"], "old locations go; other readings follow their own age"
    incidents = dict(sql(infra, "SELECT id::text, notes FROM incidents WHERE elder_id = %s",
                         c.elders[0].id))
    assert incidents[old] == "" and incidents[recent] != "", "only the old one is anonymised"
    notes = sql(infra, "SELECT incident_id::text FROM notifications WHERE incident_id IN"
                       " (%s::uuid, %s::uuid)", old, recent)
    assert notes == [], "sent SMS past their retention are deleted"
    assert sql(infra, "SELECT 1 FROM audit_log WHERE username = %s", marker) == []
