"""The duty console in a real headless Chromium: log in, an SOS pressed on MQTT appears on the
board without a reload and sounds the alarm, acknowledging it in the browser stops the
escalation (no further call reaches the Twilio mock) and shows in the timeline, the elder page
renders its charts, staff of another community see neither incident nor elder, and a district
admin deactivates a login on the accounts page. Screenshots go to test-artifacts/ (and to
docs/screenshots/ only for `make screenshots`, which sets DOCS_SCREENSHOTS=1: a test run leaves
tracked files alone)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
from playwright.async_api import Browser, Error, Page, expect

from devices.registry import save
from foundation.config import Settings
from foundation.mqtt import MqttTarget, event_topic
from tests.conftest import ARTIFACTS, make_community
from tests.helpers import eventually
from tests.test_console_access import duty_account, press_sos
from tests.twilio_mock import TwilioMock

DOCS = Path(__file__).resolve().parents[1] / "docs" / "screenshots"
# Generous: on a busy 2-core CI machine a login (argon2) or a live update can take seconds.
expect.set_options(timeout=20_000)


async def log_in(browser: Browser, settings: Settings, username: str, password: str) -> Page:
    context = await browser.new_context(viewport={"width": 1600, "height": 1000},
                                        base_url=settings.public_base_url)
    page = await context.new_page()
    await page.goto("/")
    await expect(page).to_have_url(f"{settings.public_base_url}/login")
    await page.fill("#username", username)
    await page.fill("#password", password)
    await page.click("#submit")
    await expect(page.locator("#who")).to_be_visible()
    return page


async def screenshot(page: Page, name: str, full_page: bool = False) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=ARTIFACTS / name, full_page=full_page)
    if os.environ.get("DOCS_SCREENSHOTS") == "1":  # `make screenshots`
        DOCS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ARTIFACTS / name, DOCS / name)


async def publish_history(settings: Settings, community_id: str, elder_id: str) -> None:
    """A week of blood pressure and activity, so the elder page's charts have something."""
    now = time.time()
    async with MqttTarget.parse(settings.mqtt_url).client() as client:
        for day in range(6, -1, -1):
            ts = now - day * 86400 - 3600
            bp = {"msg_id": uuid.uuid4().hex[:12], "ts": ts, "type": "bp",
                  "systolic": 128 + 3 * (day % 3), "diastolic": 78 + day % 4, "pulse": 70 + day}
            await client.publish(event_topic(community_id, f"{elder_id}-bp_meter"),
                                 json.dumps(bp).encode(), qos=1)
            for n in range(3 + day % 4):
                motion = {"msg_id": uuid.uuid4().hex[:12], "ts": ts + n * 60, "type": "motion"}
                await client.publish(event_topic(community_id, f"{elder_id}-motion_sensor"),
                                     json.dumps(motion).encode(), qos=1)


async def test_board_live_acknowledge_stops_escalation_and_scope(
    platform: Settings, twilio: TwilioMock, browser: Browser,
) -> None:
    ours, theirs = make_community(elders=2), make_community()
    save(platform.database_url, [ours, theirs])
    first, second = ours.elders
    await publish_history(platform, ours.id, first.id)
    page = await log_in(browser, platform, *duty_account(platform, ours))
    await expect(page.locator("#conn[data-state=open]")).to_be_visible()
    await page.evaluate("window.notReloaded = true")

    incident = await press_sos(platform, ours)
    card = page.locator(f'[data-incident="{incident}"]')
    await expect(card).to_be_visible(timeout=20_000)
    assert await page.evaluate("window.notReloaded === true"), "the board must not reload"
    await expect(card).to_have_class(re.compile(r"\bsev-critical\b.*\bunclaimed\b"))
    await expect(page.locator("#alarm")).to_be_visible()
    contact1, contact2, contact3 = first.contacts
    await eventually(lambda: twilio.calls(contact1.phone), 30, "the first call")
    await expect(card.locator('.timeline li[data-kind="call"]')).to_be_visible()
    await screenshot(page, "console-board.png")

    await card.locator('[data-action="acknowledge"]').click()
    await expect(card).to_have_attribute("data-status", "acknowledged")
    await expect(card.locator('.timeline li[data-kind="acknowledged"]')).to_be_visible()
    await expect(page.locator("#alarm")).to_be_hidden()
    calls_after_ack = len(twilio.calls())

    # The later calls (contact 2 at 60 s, contact 3 at 120 s) are cancelled. Make them due now,
    # as if their time had come, then press another SOS: the step runner takes due steps in
    # order, so once the new incident's call arrives, a live step of ours would have run.
    with psycopg.connect(platform.database_url) as conn:
        steps = conn.execute(
            "UPDATE escalation_steps SET due_at = now() - interval '1 second'"
            " WHERE incident_id = %s AND action = 'call' AND target->>'phone' <> %s"
            " RETURNING status", (incident, contact1.phone)).fetchall()
    assert steps and {s[0] for s in steps} == {"cancelled"}
    await press_sos(platform, ours, elder_index=1)
    await eventually(lambda: twilio.calls(second.contacts[0].phone), 30, "the next SOS's call")
    assert not twilio.calls(contact2.phone) and not twilio.calls(contact3.phone)
    assert len(twilio.calls(contact1.phone)) == 1
    assert len(twilio.calls()) == calls_after_ack + 1

    # The elder page: record, contacts, devices, and charts drawn in the browser by ECharts,
    # served by the console itself: no request leaves for a CDN.
    hosts: set[str] = set()
    page.on("request", lambda r: hosts.add(urlsplit(r.url).netloc))
    await page.goto(f"/elders/{first.id}")
    await expect(page.locator("#elder-name")).to_contain_text(first.name)
    bp = page.locator('[data-chart="vitals"] [data-panel="chart.panel_bp"]')
    await expect(bp.locator("svg")).to_be_visible()
    await expect(bp).to_contain_text("收缩压")  # the legend, in Chinese
    await expect(bp).to_contain_text("收缩压报警线 180")  # the detector's limit, as a line
    await expect(page.locator('[data-chart="activity"]')).to_contain_text("走动")
    await screenshot(page, "console-elder.png")
    await page.select_option("#chart-range", "30")  # the time-range picker redraws
    await expect(page.locator('section[data-drawn="30"]')).to_be_visible()
    await expect(bp).to_contain_text("收缩压")
    assert hosts == {urlsplit(platform.public_base_url).netloc}, hosts

    # Staff of another community: an empty board, and the elder is not found.
    other = await log_in(browser, platform, *duty_account(platform, theirs))
    await expect(other.locator("#empty")).to_be_visible()
    assert await other.locator(f'[data-incident="{incident}"]').count() == 0
    await other.goto(f"/elders/{first.id}")
    await expect(other.locator("#not-found")).to_be_visible()
    await other.click("#lang")  # the English switch
    await expect(other.locator("header h1")).to_have_text("Community Care · Duty Console")
    await other.context.close()
    await page.context.close()


async def test_admin_page_deactivates_a_login_and_shows_it_in_the_audit_log(
    platform: Settings, browser: Browser, admin_login: tuple[str, str],
) -> None:
    c = make_community()
    save(platform.database_url, [c])
    username, password = duty_account(platform, c)
    duty = await log_in(browser, platform, username, password)
    await expect(duty.locator('nav a[href="/admin"]')).to_have_count(0)

    page = await log_in(browser, platform, *admin_login)
    await page.click('nav a[href="/admin"]')
    row = page.locator(f'#accounts tr[data-username="{username}"]')
    await expect(row).to_contain_text(c.name)
    page.once("dialog", lambda dialog: dialog.accept())
    await row.locator('button[data-action="deactivate"]').click()
    await expect(row).to_have_class(re.compile(r"\binactive\b"))
    await expect(row.locator('button[data-action="activate"]')).to_be_visible()
    entry = page.locator('#audit tr[data-action="deactivate_account"]', has_text=username)
    await expect(entry.first).to_be_visible()
    await screenshot(page, "console-admin.png")

    # The page's own move to /login (its live stream was refused) may win the race.
    with contextlib.suppress(Error):
        await duty.reload()
    await expect(duty).to_have_url(f"{platform.public_base_url}/login")
