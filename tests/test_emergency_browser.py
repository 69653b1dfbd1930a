"""An emergency worked through the duty console in headless Chromium (issue 16): claim,
acknowledge, the elder presses again (the board rings again, the duty officer's phone rings),
resolve with an outcome, and the family's outcome SMS arrives at the Twilio mock."""

from __future__ import annotations

import json
import re
import time
import uuid
from typing import Any

import httpx
import psycopg
from playwright.async_api import Browser, expect

from console.accounts import Account, create_account
from devices.registry import Community, save
from foundation.config import Settings
from foundation.mqtt import MqttTarget, event_topic
from tests.conftest import make_community
from tests.helpers import eventually
from tests.test_console_access import press_sos
from tests.test_console_browser import log_in, screenshot
from tests.twilio_mock import TwilioMock

expect.set_options(timeout=20_000)


async def press_again(settings: Settings, community: Community) -> None:
    """A second press of the same button (a new message, a new press)."""
    elder = community.elders[0]
    button = next(d for d in elder.devices if d.kind == "sos_button")
    body = json.dumps({"msg_id": uuid.uuid4().hex[:12], "ts": time.time(), "type": "sos"})
    async with MqttTarget.parse(settings.mqtt_url).client() as client:
        await client.publish(event_topic(community.id, button.id), body.encode(), qos=1)


def _texts(twilio: TwilioMock, phone: str) -> list[str]:
    return [r.form["Body"][0] for r in twilio.messages(phone)]


async def test_claim_acknowledge_press_again_resolve_and_the_outcome_sms(
    platform: Settings, twilio: TwilioMock, browser: Browser,
) -> None:
    c = make_community()
    save(platform.database_url, [c])
    elder, officer = c.elders[0], c.staff[0]
    contact1 = elder.contacts[0]
    username, password = f"duty-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    create_account(platform.database_url, Account(
        username, officer.name, "duty_staff", community_id=c.id, staff_id=officer.id), password)
    page = await log_in(browser, platform, username, password)
    await expect(page.locator("#conn[data-state=open]")).to_be_visible()
    await expect(page.locator("#dryrun")).to_have_attribute("data-channel", "twilio")

    incident = await press_sos(platform, c)
    card = page.locator(f'[data-incident="{incident}"]')
    await expect(card).to_have_class(re.compile(r"\bunclaimed\b"))
    await eventually(lambda: twilio.calls(contact1.phone), 30, "the call to contact 1")

    await card.locator('[data-action="claim"]').click()
    await expect(card.locator('.timeline li[data-kind="claimed"]')).to_be_visible()
    await expect(card).not_to_have_class(re.compile(r"\bunclaimed\b"))

    await card.locator('[data-action="acknowledge"]').click()
    await expect(card).to_have_attribute("data-status", "acknowledged")
    await expect(page.locator("#alarm")).to_be_hidden()

    # Nobody has arrived yet: the elder presses again.
    await press_again(platform, c)
    await expect(card.locator('.timeline li[data-kind="alert_joined"]')).to_be_visible()
    await expect(card.locator('.timeline li[data-kind="realerted"]')).to_be_visible()
    await expect(card).to_have_class(re.compile(r"\basking-again\b"))
    await expect(page.locator("#alarm")).to_be_visible()
    await expect(page.locator("#alarm-text")).to_contain_text("老人再次求救")
    await eventually(lambda: any("再次" in b for b in _texts(twilio, officer.phone)), 30,
                     "the duty officer's SMS: the elder asks again")
    calls = await eventually(lambda: twilio.calls(officer.phone), 30,
                             "the call to whoever acknowledged")
    assert "老人再次求救" in calls[-1].form["Twiml"][0]
    await screenshot(page, "console-asking-again.png")

    await card.locator('select[data-field="outcome"]').select_option("help_sent")
    await card.locator('input[data-field="notes"]').fill("已上门，陪同就医")
    await card.locator('[data-action="resolve"]').click()
    await expect(card).to_have_count(0)  # the board shows open incidents only

    outcome = await eventually(
        lambda: [b for b in _texts(twilio, contact1.phone) if "已处理完毕" in b], 30,
        "the outcome SMS to contact 1, who was called")
    assert elder.name in outcome[-1] and "已派人上门" in outcome[-1]
    assert f"处理人：{officer.name}" in outcome[-1]
    await page.context.close()


async def test_community_rules_api_validates_previews_and_stores(
    platform: Settings, admin_http: httpx.AsyncClient,
) -> None:
    c = make_community()
    save(platform.database_url, [c])
    url = f"/api/v1/communities/{c.id}/rules"
    current = (await admin_http.get(url)).json()
    assert current["stored"] is False
    assert current["rules"]["ladders"]["smoke"]["rungs"][1] == {
        "action": "call", "target": "staff", "wait_s": 0.0}

    bad = await admin_http.post(f"{url}/preview", json={
        "ladders": {"sos": {"rungs": [{"action": "page", "target": "staff"}]}}})
    assert bad.status_code == 422 and "rungs" in json.dumps(bad.json())
    mine = {"grouping": [{"kinds": ["sos", "fall"], "window_s": 600}],
            "ladders": {"sos": {"rungs": [{"action": "call", "target": "staff"},
                                          {"action": "sms", "target": "contacts", "wait_s": 30}]}}}
    preview = (await admin_http.post(f"{url}/preview", json=mine)).json()
    assert preview["ladders"]["sos"]["rungs"][0]["reaches"] == [c.staff[0].name]
    assert preview["staff_level"] == "community"
    assert (await admin_http.get(url)).json()["stored"] is False, "a preview stores nothing"

    stored = await admin_http.put(url, json=mine)
    assert stored.status_code == 200
    again = (await admin_http.get(url)).json()
    assert again["stored"] is True and again["rules"]["grouping"][0]["window_s"] == 600
    assert (await admin_http.put(url, json={"grouping": []})).status_code == 422


async def test_rules_page_previews_before_saving(
    platform: Settings, browser: Browser, admin_login: tuple[str, str],
) -> None:
    c = make_community()
    save(platform.database_url, [c])
    page = await log_in(browser, platform, *admin_login)
    await page.click('nav a[href="/rules"]')
    await page.goto(f"/rules?community={c.id}")
    text = page.locator("#rules-json")
    await expect(text).to_have_value(re.compile(r'"emergency_line"'))
    await expect(page.locator("#save-rules")).to_be_disabled()

    await text.fill('{"ladders": {"sos": {"rungs": [{"action": "fax", "target": "staff"}]}}}')
    await page.click("#preview-rules")
    await expect(page.locator("#rules-status")).to_contain_text("规则无效")
    await expect(page.locator("#save-rules")).to_be_disabled()

    await text.fill(json.dumps({"ladders": {"sos": {"rungs": [
        {"action": "call", "target": "staff"}, {"action": "sms", "target": "contacts"}]}}}))
    await page.click("#preview-rules")
    sos = page.locator('#preview-table tr[data-kind="sos"]')
    await expect(sos).to_contain_text(c.staff[0].name)
    await screenshot(page, "console-rules.png")
    await page.click("#save-rules")
    await expect(page.locator("#rules-status")).to_contain_text("已保存")
    stored = await eventually(lambda: _stored_rules(platform, c.id), 10, "the stored rules")
    assert stored["ladders"]["sos"]["rungs"][0]["target"] == "staff"
    await page.context.close()


def _stored_rules(settings: Settings, community_id: str) -> dict[str, Any] | None:
    with psycopg.connect(settings.database_url) as conn:
        row = conn.execute("SELECT rules FROM community_rules WHERE community_id = %s",
                           (community_id,)).fetchone()
    return row[0] if row else None
