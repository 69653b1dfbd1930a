"""Access control of the console API against the running platform: login, CSRF, lockout per
account and address, throttling per address, logout, account deactivation and unlock, the audit
log API, and community scope (staff of another community see neither incidents nor elders, not
even on the live stream)."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
import uuid
from typing import Any

import httpx
import psycopg

from console.accounts import Account, create_account
from devices.registry import Community, save
from foundation.config import Settings
from foundation.mqtt import MqttTarget, event_topic
from tests.conftest import make_community, staff_login
from tests.helpers import eventually


def duty_account(settings: Settings, community: Community) -> tuple[str, str]:
    """A fresh duty-staff login for `community`: (username, password)."""
    username, password = f"duty-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    create_account(settings.database_url, Account(
        username, f"{community.name}值班员", "duty_staff", community_id=community.id,
    ), password)
    return username, password


def from_address(settings: Settings, address: str) -> httpx.AsyncClient:
    """A console client whose connections come from `address` (any 127.x.y.z is this host)."""
    return httpx.AsyncClient(base_url=settings.public_base_url, timeout=10,
                             transport=httpx.AsyncHTTPTransport(local_address=address))


async def press_sos(settings: Settings, community: Community, elder_index: int = 0) -> str:
    """Press the elder's SOS button over MQTT; returns the incident id once it is open."""
    elder = community.elders[elder_index]
    button = next(d for d in elder.devices if d.kind == "sos_button")
    body = json.dumps({"msg_id": uuid.uuid4().hex[:12], "ts": time.time(), "type": "sos"})
    async with MqttTarget.parse(settings.mqtt_url).client() as client:
        await client.publish(event_topic(community.id, button.id), body.encode(), qos=1)

    def opened() -> str | None:
        with psycopg.connect(settings.database_url) as conn:
            row = conn.execute("SELECT id FROM incidents WHERE elder_id = %s AND kind = 'sos'",
                               (elder.id,)).fetchone()
        return str(row[0]) if row else None

    return await eventually(opened, 30, f"an incident for {elder.id}")


async def follow_stream(
    client: httpx.AsyncClient, after: int, events: list[dict[str, Any]],
) -> None:
    async with client.stream("GET", f"/api/v1/stream?after={after}", timeout=None) as response:
        kind = ""
        async for line in response.aiter_lines():
            if line.startswith("event:"):
                kind = line.split(":", 1)[1].strip()
            elif line.startswith("data:") and kind == "timeline":
                events.append(json.loads(line.split(":", 1)[1]))


async def test_login_csrf_logout(platform: Settings, admin_http: httpx.AsyncClient) -> None:
    async with httpx.AsyncClient(base_url=platform.public_base_url, timeout=10) as anon:
        assert (await anon.get("/api/v1/incidents")).status_code == 401
        assert (await anon.get("/api/v1/stream")).status_code == 401
        page = await anon.get("/")
        assert page.status_code == 303 and page.headers["location"] == "/login"
        assert (await anon.get("/login")).status_code == 200
        assert (await anon.get("/healthz")).status_code in (200, 503)  # open, never 401

    me = (await admin_http.get("/api/v1/me")).json()
    assert me["role"] == "district_admin" and me["community_ids"] is None
    cookie = admin_http.cookies.get("eldercare_session")
    assert cookie and admin_http.cookies.get("eldercare_csrf") == me["csrf_token"]

    # A state-changing request without the CSRF header is refused before anything happens.
    no_csrf = await admin_http.post(f"/api/v1/incidents/{uuid.uuid4()}/acknowledge", json={},
                                    headers={"X-CSRF-Token": ""})
    assert no_csrf.status_code == 403 and "X-CSRF-Token" in no_csrf.json()["detail"]
    wrong = await admin_http.post("/api/v1/logout", headers={"X-CSRF-Token": "forged"})
    assert wrong.status_code == 403
    with_csrf = await admin_http.post(f"/api/v1/incidents/{uuid.uuid4()}/acknowledge", json={})
    assert with_csrf.status_code == 404

    login = await admin_http.post("/api/v1/login", json={"username": me["username"],
                                                         "password": "x"})
    assert login.status_code == 401
    # The session of the earlier successful login is still good; log it out and it is gone.
    assert (await admin_http.post("/api/v1/logout")).status_code == 200
    async with httpx.AsyncClient(base_url=platform.public_base_url,
                                 cookies={"eldercare_session": cookie}) as stale:
        assert (await stale.get("/api/v1/me")).status_code == 401


async def test_wrong_passwords_lock_that_address_out_of_the_account(platform: Settings) -> None:
    """Five wrong passwords from one address lock the account from that address only: the duty
    member at their own desk still signs in. Twenty from one address, whichever accounts,
    refuse that address altogether. Each address is a real loopback source address (127.x.y.z);
    X-Forwarded-For is not believed (no trusted proxy by default)."""
    c = make_community()
    save(platform.database_url, [c])
    username, password = duty_account(platform, c)
    net = f"127.{secrets.randbelow(250) + 1}.{secrets.randbelow(250)}"

    async def login(who: str, user: str, pw: str) -> httpx.Response:
        async with from_address(platform, who) as client:
            return await client.post("/api/v1/login", json={"username": user, "password": pw})

    guesser, desk, sprayer = (f"{net}.{n}" for n in (1, 2, 3))
    codes = [(await login(guesser, username, f"wrong-{n}")).status_code for n in range(5)]
    assert codes == [401, 401, 401, 401, 423]
    locked = await login(guesser, username, password)
    assert locked.status_code == 423, \
        "the right password does not open the account from the guessing address"
    assert "eldercare_session" not in locked.cookies
    assert (await login(desk, username, password)).status_code == 200, \
        "the desk is not locked out"

    sprayed = [(await login(sprayer, f"nobody-{n}", "wrong")).status_code for n in range(20)]
    assert sprayed == [401] * 19 + [429]
    res = await login(sprayer, username, password)
    assert res.status_code == 429 and res.headers["retry-after"] == "900"
    with psycopg.connect(platform.database_url) as conn:
        actions = [r[0] for r in conn.execute(
            "SELECT action FROM audit_log WHERE username = %s ORDER BY id", (username,))]
        spray = conn.execute("SELECT count(*) FROM audit_log WHERE username LIKE 'nobody-%%'"
                             " AND client LIKE %s", (f"{net}.3 %",)).fetchone()
    assert actions == ["login_failed"] * 4 + ["login_locked"] * 2 + ["login", "login_throttled"]
    assert spray is not None and spray[0] == 20


async def test_admin_deactivates_unlocks_and_reads_the_audit_log(
    platform: Settings, admin_http: httpx.AsyncClient, admin_login: tuple[str, str],
) -> None:
    c = make_community()
    save(platform.database_url, [c])
    username, password = duty_account(platform, c)
    path = f"/api/v1/staff-accounts/{username}"
    async with httpx.AsyncClient(base_url=platform.public_base_url, timeout=10) as duty:
        await staff_login(duty, username, password)
        assert (await duty.get("/api/v1/staff-accounts")).status_code == 403
        assert (await duty.get("/api/v1/audit")).status_code == 403
        assert (await duty.patch(path, json={"active": False})).status_code == 403

        listed = (await admin_http.get("/api/v1/staff-accounts")).json()["accounts"]
        mine = next(a for a in listed if a["username"] == username)
        assert mine["active"] and not mine["locked"] and mine["community_id"] == c.id
        assert (await admin_http.patch(f"/api/v1/staff-accounts/{admin_login[0]}",
                                       json={"active": False})).status_code == 409
        assert (await admin_http.patch("/api/v1/staff-accounts/nobody-here",
                                       json={"active": False})).status_code == 404

        off = await admin_http.patch(path, json={"active": False})
        assert off.status_code == 200 and off.json()["active"] is False
        assert (await duty.get("/api/v1/me")).status_code == 401, "its session ended at once"
        relogin = await duty.post("/api/v1/login", json={"username": username,
                                                          "password": password})
        assert relogin.status_code == 401
        assert (await admin_http.patch(path, json={"active": True})).status_code == 200

    guesser = f"127.{secrets.randbelow(250) + 1}.{secrets.randbelow(250)}.7"
    async with from_address(platform, guesser) as client:
        for n in range(5):
            await client.post("/api/v1/login", json={"username": username, "password": f"x{n}"})
        listed = (await admin_http.get("/api/v1/staff-accounts")).json()["accounts"]
        assert next(a for a in listed if a["username"] == username)["locked"]
        assert (await admin_http.post(f"{path}/unlock")).status_code == 200
        back = await client.post("/api/v1/login", json={"username": username,
                                                         "password": password})
        assert back.status_code == 200, "unlocked: the right password works from there again"

    first = (await admin_http.get("/api/v1/audit", params={
        "username": admin_login[0], "object_id": username, "limit": 2})).json()
    assert [e["action"] for e in first["entries"]] == ["unlock_account", "activate_account"]
    older = (await admin_http.get("/api/v1/audit", params={
        "username": admin_login[0], "object_id": username, "limit": 2,
        "before_id": first["next_before_id"]})).json()
    assert [e["action"] for e in older["entries"]] == ["deactivate_account"]
    assert older["next_before_id"] is None
    trail = (await admin_http.get("/api/v1/audit", params={"username": username})).json()
    assert [e["action"] for e in reversed(trail["entries"])] == [
        "login", "login_failed",  # the second: while deactivated
        *["login_failed"] * 4, "login_locked", "login"]


async def test_staff_of_another_community_see_nothing(
    platform: Settings, admin_http: httpx.AsyncClient,
) -> None:
    ours, theirs = make_community(), make_community()
    save(platform.database_url, [ours, theirs])
    with psycopg.connect(platform.database_url) as conn:
        conn.execute("UPDATE elders SET medical_notes = '高血压，青霉素过敏' WHERE id = %s",
                     (ours.elders[0].id,))
        low = ours.elders[0].devices[0].id
        conn.execute("UPDATE devices SET battery = 7, last_seen = now() WHERE id = %s", (low,))
        start = conn.execute("SELECT coalesce(max(id), 0) FROM incident_timeline").fetchone()
    assert start is not None
    elder = ours.elders[0].id
    incident = await press_sos(platform, ours)

    async with httpx.AsyncClient(base_url=platform.public_base_url, timeout=10) as other, \
            httpx.AsyncClient(base_url=platform.public_base_url, timeout=10) as mine:
        await staff_login(other, *duty_account(platform, theirs))
        await staff_login(mine, *duty_account(platform, ours))
        live: list[dict[str, Any]] = []
        listener = asyncio.create_task(follow_stream(other, start[0], live))

        board = (await other.get("/api/v1/incidents")).json()["incidents"]
        assert incident not in {i["id"] for i in board}
        assert (await other.get(f"/api/v1/incidents/{incident}")).status_code == 404
        ack = await other.post(f"/api/v1/incidents/{incident}/acknowledge", json={})
        assert ack.status_code == 404
        assert (await other.get(f"/api/v1/console/elders/{elder}")).status_code == 404
        chart = await other.get(f"/api/v1/console/elders/{elder}/charts/vitals")
        assert chart.status_code == 404
        found = (await other.get("/api/v1/console/elders", params={"q": elder})).json()
        assert found["elders"] == []
        problems = (await other.get("/api/v1/console/devices/problems")).json()["devices"]
        assert low not in {d["id"] for d in problems}

        # Their own SOS reaches their stream; ours, written earlier, never did.
        their_incident = await press_sos(platform, theirs)
        await eventually(lambda: any(e["incident_id"] == their_incident for e in live), 30,
                         "their own incident on their stream")
        listener.cancel()
        assert {e["incident_id"] for e in live} == {their_incident}

        # Our duty staff see the incident and the elder, medical notes included.
        assert incident in {i["id"] for i in (await mine.get("/api/v1/incidents")).json()[
            "incidents"]}
        record = (await mine.get(f"/api/v1/console/elders/{elder}")).json()
        assert record["medical_notes"] == "高血压，青霉素过敏"
        assert [c["priority"] for c in record["contacts"]] == [1, 2, 3]
        chart = await mine.get(f"/api/v1/console/elders/{elder}/charts/vitals")
        assert chart.status_code == 200 and chart.json()["chart"] == "vitals"
        problems = (await mine.get("/api/v1/console/devices/problems")).json()["devices"]
        assert {"id": low, "low_battery": True, "offline": False}.items() <= next(
            d for d in problems if d["id"] == low).items()
        found = (await mine.get("/api/v1/console/elders", params={"q": "测试路1号"})).json()
        assert elder in {e["id"] for e in found["elders"]}

    # A district admin sees everything; the street supervisor role would not see medical notes.
    assert (await admin_http.get(f"/api/v1/incidents/{incident}")).status_code == 200
    for _ in range(2):
        board = (await admin_http.get("/api/v1/incidents")).json()["incidents"]
        assert incident in {i["id"] for i in board}
    with psycopg.connect(platform.database_url) as conn:
        audit = conn.execute(
            "SELECT action, object_type FROM audit_log WHERE object_id IN (%s, %s)"
            " ORDER BY id", (incident, elder)).fetchall()
    assert ("denied", "incident") in audit and ("denied", "elder") in audit
    assert ("view", "elder") in audit and ("view", "incident") in audit
    assert ("view_chart", "elder") in audit and ("search", "elder") in audit
    assert audit.count(("view_board", "incident")) == 2, "ours and the admin's, once each"


async def test_street_supervisor_sees_its_street_without_personal_data(
    platform: Settings, admin_http: httpx.AsyncClient,
) -> None:
    c = make_community()
    save(platform.database_url, [c])
    street = f"街道-{uuid.uuid4().hex[:6]}"
    with psycopg.connect(platform.database_url) as conn:
        conn.execute("UPDATE communities SET street = %s WHERE id = %s", (street, c.id))
    username, password = f"street-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    created = await admin_http.post("/api/v1/staff-accounts", json={
        "username": username, "display_name": "街道督导", "role": "street_supervisor",
        "password": password, "street": street})
    assert created.status_code == 201, created.text
    async with httpx.AsyncClient(base_url=platform.public_base_url, timeout=10) as client:
        me = await staff_login(client, username, password)
        assert me["community_ids"] == [c.id] and not me["sees_personal_data"]
        record = (await client.get(f"/api/v1/console/elders/{c.elders[0].id}")).json()
        assert record["personal_data_hidden"]
        assert "medical_notes" not in record and "id_number" not in record
        refused = await client.post("/api/v1/staff-accounts", json={
            "username": "sneaky", "display_name": "x", "role": "district_admin",
            "password": "long-enough-1"})
        assert refused.status_code == 403
