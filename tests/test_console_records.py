"""The console's record pages in a real headless Chromium against the running platform: elders
(create, edit, deactivate), contacts reordered by drag (the next SOS calls the new first
contact), away periods (add, end, cancel), devices (status, battery, a new password shown once:
the old one stops working at the broker) and the ledger upload (wrong rows listed with their
row number and reason, the right ones in the database). Each change is audited; a street
supervisor reads but cannot change the registry."""

from __future__ import annotations

import json
import re
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiomqtt
import httpx
import psycopg
from openpyxl import Workbook
from playwright.async_api import Browser, Page, expect

from devices.registry import save
from foundation.config import Settings
from foundation.mqtt import MqttTarget
from tests.conftest import make_community, staff_login
from tests.helpers import eventually
from tests.test_console_access import duty_account, press_sos
from tests.test_console_browser import log_in, screenshot
from tests.test_provisioning import _can_log_in, _provisioned
from tests.twilio_mock import TwilioMock

SECRET = re.compile(r"\S{8,}")  # a password as the page shows it


def query(settings: Settings, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(settings.database_url) as conn:
        return conn.execute(sql, args).fetchall()


def audited(settings: Settings, object_id: str) -> list[str]:
    """The audit log's actions on one object, oldest first."""
    return [r[0] for r in query(settings, "SELECT action FROM audit_log WHERE object_id = %s"
                                          " ORDER BY id", object_id)]


def accept_dialogs(page: Page) -> None:
    page.on("dialog", lambda dialog: dialog.accept())


async def test_elders_page_creates_edits_and_deactivates_an_elder(
    platform: Settings, browser: Browser,
) -> None:
    c = make_community()
    save(platform.database_url, [c])
    page = await log_in(browser, platform, *duty_account(platform, c))
    accept_dialogs(page)
    await page.goto("/elders")
    await expect(page.locator(f'#results li[data-elder="{c.elders[0].id}"]')).to_be_visible()

    new_id = f"E-{uuid.uuid4().hex[:8]}"
    await page.click("#open-new-elder")
    await page.fill("#elder-id", new_id)
    await page.fill("#elder-name-input", "王秀英")
    await page.fill("#elder-id-number", "11010519491231002X")
    await page.fill("#elder-address", "和平里七区 3-2-101")
    await page.fill("#elder-phone", "13800000001")  # phone numbers are stored as E.164
    await page.check("#elder-lives-alone")
    await page.click("#create-elder")
    await expect(page.locator("#elder-name")).to_contain_text("王秀英")
    assert query(platform, "SELECT community_id, phone, lives_alone, id_number FROM elders"
                           " WHERE id = %s", new_id) == [
        (c.id, "+8613800000001", True, "11010519491231002X")]

    # A bad value is refused with the field named, in the page's language.
    await page.click("#edit-elder-open")
    await page.fill("#edit-phone", "12")
    await page.click("#save-elder")
    await expect(page.locator("#edit-elder .error")).to_contain_text("电话")
    await page.fill("#edit-phone", "13800000002")
    await page.fill("#edit-address", "和平里七区 5-1-202")
    await page.click("#save-elder")
    await expect(page.locator('[data-field="elder.address"]')).to_have_text("和平里七区 5-1-202")
    assert query(platform, "SELECT address, phone FROM elders WHERE id = %s", new_id) == [
        ("和平里七区 5-1-202", "+8613800000002")]

    await page.click("#deactivate-elder")
    await expect(page.locator("#elder-inactive")).to_be_visible()
    assert query(platform, "SELECT active FROM elders WHERE id = %s", new_id) == [(False,)]
    await page.goto("/elders")
    await expect(page.locator(f'#results li[data-elder="{new_id}"]')).to_have_count(0)
    await page.check("#include-inactive")
    await expect(page.locator(f'#results li[data-elder="{new_id}"]')).to_contain_text("已停用")
    await page.click("#open-new-elder")
    await screenshot(page, "console-elders.png")
    assert audited(platform, new_id)[:1] == ["create"]
    assert {"update", "deactivate"} <= set(audited(platform, new_id))
    await page.context.close()


async def test_contacts_dragged_into_a_new_order_are_called_in_that_order(
    platform: Settings, browser: Browser, twilio: TwilioMock,
) -> None:
    c = make_community()
    save(platform.database_url, [c])
    elder = c.elders[0]
    first, second, third = elder.contacts
    page = await log_in(browser, platform, *duty_account(platform, c))
    accept_dialogs(page)
    await page.goto(f"/elders/{elder.id}")
    names = page.locator("#contacts li .contact-name")
    await expect(names).to_have_text([first.name, second.name, third.name])

    # Drag the third contact onto the top half of the first: it becomes first.
    rows = page.locator("#contacts li")
    box = await rows.nth(0).bounding_box()
    assert box is not None
    await rows.nth(2).drag_to(rows.nth(0), target_position={"x": box["width"] / 2, "y": 3})
    await expect(page.locator("#contacts-status")).to_have_text("呼叫顺序已保存")
    await expect(names).to_have_text([third.name, first.name, second.name])
    stored = query(platform, "SELECT phone FROM contacts WHERE elder_id = %s ORDER BY priority",
                   elder.id)
    assert [r[0] for r in stored] == [third.phone, first.phone, second.phone]
    assert "reorder_contacts" in audited(platform, elder.id)

    # The ladder reads the new order: the SOS's first call goes to the contact moved up.
    await press_sos(platform, c)
    await eventually(lambda: twilio.calls(third.phone), 30, "the call to the new first contact")
    assert not twilio.calls(first.phone), "the old first contact is now second, called later"

    # Add, edit and remove: the list and the calling order follow.
    await page.fill("#add-contact [name=name]", "李强")
    await page.fill("#add-contact [name=relation]", "侄子")
    await page.fill("#add-contact [name=phone]", "13900000003")
    await page.click("#add-contact button[type=submit]")
    await expect(names).to_have_text([third.name, first.name, second.name, "李强"])
    await rows.nth(3).locator('[data-action="up"]').click()
    await expect(names).to_have_text([third.name, first.name, "李强", second.name])
    await rows.nth(1).locator('[data-action="remove"]').click()
    await expect(names).to_have_text([third.name, "李强", second.name])
    await rows.nth(1).locator('[data-action="edit"]').click()
    await page.fill("#contacts li form [name=relation]", "外甥")
    await page.click("#contacts li form button[type=submit]")
    await expect(rows.nth(1)).to_contain_text("李强（外甥）")
    stored = query(platform, "SELECT name, relation FROM contacts WHERE elder_id = %s"
                             " ORDER BY priority", elder.id)
    assert stored == [(third.name, third.relation), ("李强", "外甥"),
                      (second.name, second.relation)]
    await page.context.close()


async def test_away_periods_are_added_ended_and_cancelled(
    platform: Settings, browser: Browser,
) -> None:
    c = make_community()
    save(platform.database_url, [c])
    elder = c.elders[0]
    page = await log_in(browser, platform, *duty_account(platform, c))
    await page.goto(f"/elders/{elder.id}")
    await page.fill("#away-reason", "住院")
    await page.click("#add-away button[type=submit]")
    ongoing = page.locator('#away tr[data-state="ongoing"]')
    await expect(ongoing).to_contain_text("住院")
    [(period_id, ends_at)] = query(platform, "SELECT id, ends_at FROM elder_away_periods"
                                             " WHERE elder_id = %s", elder.id)
    assert ends_at is None

    tomorrow = (datetime.now() + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
    await page.fill("#away-starts", tomorrow)
    await page.fill("#away-reason", "去女儿家")
    await page.click("#add-away button[type=submit]")
    await expect(page.locator('#away tr[data-state="upcoming"]')).to_contain_text("去女儿家")
    await screenshot(page, "console-elder-records.png", full_page=True)

    await ongoing.locator('[data-action="end"]').click()
    await expect(page.locator(f'#away tr[data-away="{period_id}"]')).to_have_attribute(
        "data-state", "over")
    [(ended,)] = query(platform, "SELECT ends_at FROM elder_away_periods WHERE id = %s",
                       period_id)
    assert ended is not None and ended <= datetime.now(UTC)
    await page.locator('#away tr[data-state="upcoming"] [data-action="cancel"]').click()
    await expect(page.locator('#away tr[data-state="upcoming"]')).to_have_count(0)
    assert len(query(platform, "SELECT 1 FROM elder_away_periods WHERE elder_id = %s",
                     elder.id)) == 1
    assert {"end_away", "cancel_away"} <= set(audited(platform, elder.id))
    await page.context.close()


async def _publish_status(settings: Settings, login: dict[str, str], battery: int) -> None:
    """A heartbeat from the device itself, with its own (new) login."""
    target = MqttTarget.parse(settings.device_broker_url)
    async with aiomqtt.Client(target.host, target.port, username=login["username"],
                              password=login["password"]) as device:
        await device.publish(f"{login['topic_prefix']}status", json.dumps(
            {"msg_id": uuid.uuid4().hex[:12], "ts": time.time(), "online": True,
             "battery": battery}).encode(), qos=1)


async def test_devices_page_rotates_a_password_and_the_old_one_stops_working(
    platform: Settings, browser: Browser, admin_http: httpx.AsyncClient,
    admin_login: tuple[str, str],
) -> None:
    device = await _provisioned(admin_http, kind="sos_button")
    old = device["mqtt"]
    assert isinstance(old, dict)
    await eventually(lambda: _can_log_in(platform, old["username"], old["password"]), 10,
                     "the first login")
    page = await log_in(browser, platform, *admin_login)
    accept_dialogs(page)
    await page.goto(f"/devices?q={device['id']}")
    row = page.locator(f'#devices tr[data-device="{device["id"]}"]')
    await expect(row).to_contain_text("从未上报")

    await row.locator('[data-action="rotate"]').click()
    password = page.locator("#credentials #cred-password")
    await expect(password).to_have_text(SECRET)
    new = {"username": await page.locator("#cred-username").inner_text(),
           "password": await password.inner_text(),
           "topic_prefix": await page.locator("#cred-topic").inner_text()}
    assert new["username"] == old["username"] and new["password"] != old["password"]
    await eventually(lambda: _can_log_in(platform, new["username"], new["password"]), 10,
                     "the new login")
    assert not await _can_log_in(platform, old["username"], old["password"])
    assert "rotate_credentials" in audited(platform, str(device["id"]))

    # The device reports in with its new login: the page shows it online, with a low battery.
    await _publish_status(platform, new, battery=12)

    async def shown() -> bool:
        await page.goto(f"/devices?q={device['id']}")
        await expect(row).to_be_visible()
        return await row.get_attribute("data-online") == "true"

    await eventually(shown, 30, "the device online on the page")
    await expect(row).to_contain_text("在线")
    await expect(row).to_contain_text("电量低")
    await expect(row).to_contain_text("12%")
    await page.goto(f"/devices?q={device['id']}")
    await row.locator('[data-action="rotate"]').click()
    await expect(password).to_have_text(SECRET)
    await screenshot(page, "console-devices.png")
    # Shown once: after a reload the password is gone from the page.
    await page.reload()
    await expect(row).to_be_visible()
    await expect(page.locator("#credentials")).to_have_count(0)
    await page.context.close()


def ledger(path: Path, community_id: str, tag: str) -> dict[str, str]:
    """A workbook with one wrong elder (row 3: ID check digit), one wrong contact (row 3:
    phone) and a contact of the wrong elder (row 4); everything else is right."""
    good, bad = f"E-{tag}-ok", f"E-{tag}-bad"
    book = Workbook()
    elders = book.active
    elders.title = "老人"
    elders.append(["编号", "社区编号", "姓名", "身份证号", "住址", "独居"])
    elders.append([good, community_id, "赵桂兰", "", "和平里一区 1-1-101", "是"])
    elders.append([bad, community_id, "钱玉珍", "110105194912310021", "和平里一区 1-1-102", "否"])
    contacts = book.create_sheet("联系人")
    contacts.append(["老人编号", "顺序", "姓名", "关系", "电话"])
    contacts.append([good, 1, "赵军", "儿子", "13812345678"])
    contacts.append([good, 2, "赵丽", "女儿", "12345"])
    contacts.append([bad, 1, "钱伟", "儿子", "13812345679"])
    devices = book.create_sheet("设备")
    devices.append(["设备编号", "老人编号", "设备类型", "房间"])
    devices.append([f"{good}-sos", good, "sos_button", "卧室"])
    book.save(path)
    return {"good": good, "bad": bad}


async def test_ledger_upload_lists_wrong_rows_and_imports_the_right_ones(
    platform: Settings, browser: Browser, tmp_path: Path,
) -> None:
    c = make_community()
    save(platform.database_url, [c])
    tag = uuid.uuid4().hex[:8]
    ids = ledger(tmp_path / "台账.xlsx", c.id, tag)
    page = await log_in(browser, platform, *duty_account(platform, c))
    await page.click('nav a[href="/import"]')
    await page.set_input_files("#ledger-file", tmp_path / "台账.xlsx")
    await page.click("#upload")
    errors = page.locator("#import-errors tbody tr")
    await expect(errors).to_have_count(3)
    await expect(errors.nth(0)).to_contain_text("老人")
    await expect(errors.nth(0).locator(".row-number")).to_have_text("3")
    await expect(errors.nth(0)).to_contain_text("身份证号")
    await expect(errors.nth(0).locator(".reason")).to_contain_text("check digit")
    await expect(errors.nth(1).locator(".row-number")).to_have_text("3")
    await expect(errors.nth(1)).to_contain_text("电话")
    await expect(errors.nth(2).locator(".row-number")).to_have_text("4")
    await expect(errors.nth(2)).to_contain_text(ids["bad"])
    await expect(page.locator("#import-summary")).to_contain_text("老人 1，联系人 1，设备 1")
    await expect(page.locator("#import-rows tbody tr")).to_have_count(3)
    await expect(page.locator("#import-mqtt")).to_contain_text(f"device.{ids['good']}-sos")
    await screenshot(page, "console-import.png", full_page=True)

    assert query(platform, "SELECT id FROM elders WHERE id = ANY(%s)", list(ids.values())) == [
        (ids["good"],)]
    assert query(platform, "SELECT name, phone FROM contacts WHERE elder_id = %s",
                 ids["good"]) == [("赵军", "+8613812345678")]
    assert query(platform, "SELECT elder_id FROM devices WHERE id = %s",
                 f"{ids['good']}-sos") == [(ids["good"],)]
    [(detail,)] = query(platform, "SELECT detail FROM audit_log WHERE action = 'import'"
                                  " AND object_id = '台账.xlsx' AND community_id IS NULL"
                                  " AND username LIKE 'duty-%%' ORDER BY id DESC LIMIT 1")
    assert detail["rejected_rows"] == 3 and detail["counts"]["elders"] == 1

    # All or nothing when asked: the same file with its wrong rows imports nothing more.
    with psycopg.connect(platform.database_url) as conn:
        conn.execute("DELETE FROM contacts WHERE elder_id = %s", (ids["good"],))
    await page.uncheck("#skip-invalid")
    await page.click("#upload")
    await expect(page.locator("#import-summary")).to_have_text("台账有错误，全部未导入。")
    await expect(errors).to_have_count(3)
    assert query(platform, "SELECT 1 FROM contacts WHERE elder_id = %s", ids["good"]) == []
    await page.context.close()


async def test_a_street_supervisor_reads_the_registry_but_cannot_change_it(
    platform: Settings, admin_http: httpx.AsyncClient, browser: Browser,
) -> None:
    c = make_community()
    save(platform.database_url, [c])
    street = f"街道-{uuid.uuid4().hex[:6]}"
    with psycopg.connect(platform.database_url) as conn:
        conn.execute("UPDATE communities SET street = %s WHERE id = %s", (street, c.id))
    username, password = f"street-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    assert (await admin_http.post("/api/v1/staff-accounts", json={
        "username": username, "display_name": "街道督导", "role": "street_supervisor",
        "password": password, "street": street})).status_code == 201
    elder = c.elders[0]
    async with httpx.AsyncClient(base_url=platform.public_base_url, timeout=10) as client:
        await staff_login(client, username, password)
        assert (await client.get(f"/api/v1/elders/{elder.id}/contacts")).status_code == 200
        contact_ids = [r[0] for r in query(platform, "SELECT id FROM contacts WHERE elder_id"
                                                     " = %s ORDER BY priority", elder.id)]
        refused = [
            await client.patch(f"/api/v1/elders/{elder.id}", json={"address": "x"}),
            await client.post("/api/v1/elders", json={"id": f"E-{uuid.uuid4().hex[:6]}",
                                                      "community_id": c.id, "name": "x"}),
            await client.put(f"/api/v1/console/elders/{elder.id}/contacts/order",
                             json={"contact_ids": contact_ids[::-1]}),
            await client.post(f"/api/v1/devices/{elder.devices[0].id}/credentials"),
            await client.post("/api/v1/console/ledger", params={"filename": "a.csv"},
                              content=b"id,community_id,name\n"),
        ]
        assert [r.status_code for r in refused] == [403] * 5
    page = await log_in(browser, platform, username, password)
    await page.goto(f"/elders/{elder.id}")
    await expect(page.locator("#contacts li")).to_have_count(3)
    await expect(page.locator("#edit-elder-open, #add-contact, #add-away")).to_have_count(0)
    await expect(page.locator('nav a[href="/import"]')).to_have_count(0)
    await page.goto("/import")
    await expect(page.locator("#page")).to_contain_text("台账导入由社区值班员或区管理员操作")
    await page.context.close()


async def test_record_routes_refuse_other_communities_and_wrong_orders(
    platform: Settings,
) -> None:
    ours, theirs = make_community(), make_community()
    save(platform.database_url, [ours, theirs])
    mine, other = ours.elders[0], theirs.elders[0]
    with psycopg.connect(platform.database_url) as conn:
        [(away_id,)] = conn.execute(
            "INSERT INTO elder_away_periods (elder_id, starts_at) VALUES (%s, now())"
            " RETURNING id", (other.id,)).fetchall()
    ids = {e.id: [r[0] for r in query(platform, "SELECT id FROM contacts WHERE elder_id = %s"
                                                " ORDER BY priority", e.id)]
           for e in (mine, other)}
    async with httpx.AsyncClient(base_url=platform.public_base_url, timeout=10) as client:
        await staff_login(client, *duty_account(platform, ours))
        order = "/api/v1/console/elders/{}/contacts/order"
        theirs_r = await client.put(order.format(other.id), json={"contact_ids": ids[other.id]})
        assert theirs_r.status_code == 404
        mixed = [ids[mine.id][0], ids[mine.id][1], ids[other.id][0]]
        assert (await client.put(order.format(mine.id), json={"contact_ids": mixed})
                ).status_code == 422
        assert (await client.put(order.format(mine.id), json={"contact_ids": ids[mine.id][:2]})
                ).status_code == 422
        assert (await client.post(f"/api/v1/console/away-periods/{away_id}/end")
                ).status_code == 404
        devices = (await client.get("/api/v1/console/devices")).json()["devices"]
        assert devices and {d["community_id"] for d in devices} == {ours.id}
        broken = await client.post("/api/v1/console/ledger", params={"filename": "x.xlsx"},
                                   content=b"not a workbook")
        assert broken.status_code == 422 and "cannot read" in broken.json()["detail"][0]["msg"]
    # Nothing moved: both elders keep their order, the other's away period is still open.
    for e in (mine, other):
        assert [r[0] for r in query(platform, "SELECT id FROM contacts WHERE elder_id = %s"
                                              " ORDER BY priority", e.id)] == ids[e.id]
    assert query(platform, "SELECT ends_at FROM elder_away_periods WHERE id = %s",
                 away_id) == [(None,)]
