"""The family page, as a family member meets it: a watch SOS pressed 1.5 km from home over MQTT
opens an incident; the SMS that reaches the Twilio mock says where (distance, direction, map
link) and carries the contact's link, which opens a phone-sized page in real headless Chromium
that says what happened and where, follows the timeline live, and "我来处理" acknowledges as
that contact (pending calls stop). A reconnect replays what was missed; every view and action
is audited; the link dies 24 h after resolution."""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from typing import Any

import httpx
import psycopg
from playwright.async_api import Browser, expect
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from devices.registry import save
from dispatcher import family
from foundation.config import Settings
from foundation.mqtt import MqttTarget, event_topic
from simulators.population import offset
from tests.conftest import make_community
from tests.helpers import eventually
from tests.test_console_browser import screenshot
from tests.twilio_mock import TwilioMock

HOME = (39.9583, 116.4172)
PHONE = {"width": 390, "height": 844}


class FlakyNetwork:
    """A TCP relay in front of the console: `cut()` drops every open connection and refuses
    new ones until `restore()`, as a phone losing its signal would."""

    def __init__(self, target: str) -> None:
        self.host, port = target.rsplit(":", 1)
        self.port = int(port)
        self.down = False
        self.writers: set[asyncio.StreamWriter] = set()
        self.server: asyncio.Server | None = None

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.down:
            writer.close()
            return
        up_reader, up_writer = await asyncio.open_connection(self.host, self.port)
        self.writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self.writers -= {writer, up_writer}

    def cut(self) -> None:
        self.down = True
        for w in list(self.writers):
            w.transport.abort()

    def restore(self) -> None:
        self.down = False

    async def stop(self) -> None:
        self.cut()
        if self.server is not None:
            self.server.close()


async def watch_sos_away_from_home(settings: Settings) -> tuple[Any, str]:
    """A community whose elder has a home on record presses SOS on the watch 1.2 km north and
    0.9 km east of it; returns (community, incident id)."""
    community = make_community()
    save(settings.database_url, [community])
    elder = community.elders[0]
    with psycopg.connect(settings.database_url) as conn:
        conn.execute("UPDATE elders SET home = %s WHERE id = %s",
                     (Jsonb({"lat": HOME[0], "lon": HOME[1], "radius_m": 100}), elder.id))
    watch = next(d for d in elder.devices if d.kind == "smart_watch")
    lat, lon = offset(*HOME, 1200, 900)
    body = {"msg_id": uuid.uuid4().hex[:12], "ts": time.time(), "type": "sos",
            "location": {"lat": lat, "lon": lon, "accuracy_m": 8, "source": "gnss"}}
    async with MqttTarget.parse(settings.mqtt_url).client() as client:
        await client.publish(event_topic(community.id, watch.id), json.dumps(body).encode(),
                             qos=1)

    def opened() -> str | None:
        with psycopg.connect(settings.database_url) as conn:
            row = conn.execute("SELECT id FROM incidents WHERE elder_id = %s AND kind = 'sos'",
                               (elder.id,)).fetchone()
        return str(row[0]) if row else None

    return community, await eventually(opened, 30, f"an incident for {elder.id}")


async def link_for(settings: Settings, incident_id: str, priority: int = 1,
                   language: str = "zh-Hans") -> str:
    async with await psycopg.AsyncConnection.connect(
            settings.database_url, row_factory=dict_row, autocommit=True) as conn:
        secret = await family.link_secret(conn)
        return await family.issue(conn, secret, incident_id, priority, f"联系人{priority}",
                                  language)


def audit_actions(settings: Settings, incident_id: str) -> list[str]:
    with psycopg.connect(settings.database_url) as conn:
        return [r[0] for r in conn.execute(
            "SELECT action FROM audit_log WHERE object_id = %s AND username LIKE 'contact:%%'"
            " ORDER BY id", (incident_id,))]


async def test_family_member_follows_and_takes_the_incident_from_a_phone(
    platform: Settings, browser: Browser, twilio: TwilioMock,
) -> None:
    community, incident_id = await watch_sos_away_from_home(platform)
    first = community.elders[0].contacts[0]
    sms = (await eventually(lambda: twilio.messages(first.phone), 30, "the SMS to contact 1")
           )[0].form["Body"][0]
    assert "位置：距家约1.5公里，东北方向，地图：https://uri.amap.com/marker?" in sms
    found = re.search(r"实时进展：(\S+)/f/([A-Za-z0-9_-]{22})", sms)
    assert found and found.group(1) == platform.public_base_url, sms
    token = found.group(2)
    call = (await eventually(lambda: twilio.calls(first.phone), 30, "the call to contact 1")
            )[0].form["Twiml"][0]
    assert "位置：距家约1.5公里，东北方向" in call and "amap" not in call
    network = FlakyNetwork(platform.console_bind)
    context = await browser.new_context(viewport=PHONE, base_url=await network.start(),
                                        is_mobile=True)
    page = await context.new_page()
    await page.goto(f"/f/{token}")
    await expect(page.locator("#title")).to_have_text(f"{community.elders[0].name}的紧急事件")
    facts = page.locator("#facts")
    await expect(facts).to_contain_text("紧急呼叫（SOS）")
    await expect(facts).to_contain_text("距家约1.5公里，东北方向")
    href = await page.locator("#facts a").get_attribute("href")
    assert href is not None and href.startswith("https://uri.amap.com/marker?position=")
    await expect(page.locator("#timeline")).to_contain_text("平台收到：紧急呼叫（SOS）")
    await screenshot(page, "family-page.png", full_page=True)

    await page.click("#taking")
    await expect(page.locator("#status")).to_have_text("已有人负责")
    await expect(page.locator("#facts")).to_contain_text("联系人1（联系人1）")
    await expect(page.locator("#timeline")).to_contain_text("联系人1（联系人1）已负责处理")
    with psycopg.connect(platform.database_url) as conn:
        via, pending = conn.execute(
            "SELECT acknowledged_via, (SELECT count(*) FROM escalation_steps s"
            " WHERE s.incident_id = i.id AND s.status = 'pending' AND s.purpose = 'ladder')"
            " FROM incidents i"
            " WHERE id = %s", (incident_id,)).fetchone() or (None, None)
    assert via == "family_page" and pending == 0
    assert audit_actions(platform, incident_id)[:2] == ["family_view", "family_taking"]

    # The phone loses its connection; the community writes on the incident meanwhile; when
    # the phone is back, the page shows what it missed.
    network.cut()
    await expect(page.locator("#live")).to_have_text("连接中断，正在重连…", timeout=30_000)
    with psycopg.connect(platform.database_url) as conn:
        conn.execute("INSERT INTO incident_timeline (incident_id, kind, detail) VALUES"
                     " (%s, 'claimed', %s)", (incident_id, Jsonb({"who": "值班员小王"})))
    network.restore()
    await expect(page.locator("#timeline")).to_contain_text("值班员小王正在处理",
                                                            timeout=30_000)
    await expect(page.locator("#live")).to_have_text("实时更新中")
    entries = await page.locator("#timeline li").evaluate_all("els => els.map(e => e.dataset.id)")
    assert len(entries) == len(set(entries)), "a replayed row is shown once"
    await context.close()
    await network.stop()


async def test_stream_replays_from_last_event_id_and_links_expire(platform: Settings) -> None:
    _, incident_id = await watch_sos_away_from_home(platform)
    token = await link_for(platform, incident_id, priority=2, language="en")
    async with httpx.AsyncClient(base_url=platform.public_base_url, timeout=10) as client:
        state = (await client.get(f"/api/family/{token}")).json()
        assert state["where"].startswith("about 1.5 km north-east of home")
        assert "+86" not in json.dumps(state), "no phone number on the family page"
        first = state["timeline"][0]["id"]
        with psycopg.connect(platform.database_url) as conn:
            conn.execute("INSERT INTO incident_timeline (incident_id, kind, detail) VALUES"
                         " (%s, 'family_reached_elder', %s)", (incident_id, Jsonb({"who": "X"})))
        seen: list[str] = []
        async with client.stream("GET", f"/api/family/{token}/stream",
                                 headers={"Last-Event-ID": str(first)}) as response:
            async for line in response.aiter_lines():
                if line.startswith("data:"):
                    seen.append(json.loads(line[5:])["text"])
                    if "X reached the elder" in seen[-1]:
                        break
        assert "Received: SOS" not in " ".join(seen), "rows before Last-Event-ID not resent"

        for ctype in ("text/plain", "application/x-www-form-urlencoded"):  # cross-site forms
            r = await client.post(f"/api/family/{token}/actions", content='{"action":"taking"}',
                                  headers={"content-type": ctype})
            assert r.status_code == 415, ctype
        r = await client.post(f"/api/family/{token}/actions", json={"action": "delete"})
        assert r.status_code == 422
        assert (await client.get("/api/family/" + "A" * 22)).status_code == 404
        assert (await client.get("/f/not-a-token")).status_code == 404

        with psycopg.connect(platform.database_url) as conn:
            conn.execute("UPDATE incidents SET status = 'resolved', outcome = 'elder_fine',"
                         " resolved_at = now() - interval '2 hours' WHERE id = %s",
                         (incident_id,))
        closed = (await client.get(f"/api/family/{token}")).json()
        assert closed["status"] == "resolved" and closed["outcome"] == "Elder is fine"
        r = await client.post(f"/api/family/{token}/actions", json={"action": "taking"})
        assert r.status_code == 409
        with psycopg.connect(platform.database_url) as conn:
            conn.execute("UPDATE incidents SET resolved_at = now() - interval '25 hours'"
                         " WHERE id = %s", (incident_id,))
        assert (await client.get(f"/api/family/{token}")).status_code == 404
        assert (await client.get(f"/f/{token}")).status_code == 404


async def test_staff_see_where_on_the_board_and_the_elder_page(
    platform: Settings, browser: Browser, admin_login: tuple[str, str],
) -> None:
    from tests.test_console_browser import log_in

    community, _ = await watch_sos_away_from_home(platform)
    elder = community.elders[0]
    page = await log_in(browser, platform, *admin_login)
    card = page.locator(f'li.incident[data-elder="{elder.id}"]')
    await expect(card.locator(".where")).to_contain_text("位置：距家约1.5公里，东北方向")
    assert (await card.locator(".where a").get_attribute("href") or "").startswith(
        "https://uri.amap.com/marker?")
    # The store writes the press (with its position) to the readings; the elder page plots it.
    def stored() -> bool:
        with psycopg.connect(platform.database_url) as conn:
            return conn.execute("SELECT 1 FROM readings WHERE elder_id = %s AND type = 'sos'"
                                " AND data ? 'location'", (elder.id,)).fetchone() is not None

    await eventually(stored, 30, "the press in the readings")
    await page.goto(f"/elders/{elder.id}")
    positions = page.locator("#positions")
    await expect(positions).to_contain_text("距家约1.5公里，东北方向", timeout=30_000)
    await expect(positions.locator("svg circle.latest")).to_have_count(1)
    await screenshot(page, "console-elder-positions.png")
    await page.context.close()
