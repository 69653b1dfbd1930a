"""The monthly supervision report against the running platform: the figures of a community's
month, the XLSX a district opens (summary, every incident, a reproducible 10 % call-back
sample with the phone to call), refused outside the caller's scope, and audited."""

from __future__ import annotations

import io
import math
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import psycopg
from openpyxl import load_workbook
from playwright.async_api import Browser, expect

from console.reports import call_back_sample
from devices.registry import save
from foundation.config import Settings
from tests.conftest import ARTIFACTS, make_community, staff_login
from tests.test_console_access import duty_account
from tests.test_console_browser import log_in, screenshot


def seed_month(settings: Settings, n: int) -> tuple[str, str]:
    """A community with `n` resolved incidents in March 2026; returns (community id, month)."""
    c = make_community(elders=3)
    save(settings.database_url, [c])
    t0 = datetime(2026, 3, 10, 2, 0, tzinfo=UTC)
    with psycopg.connect(settings.database_url) as conn:
        for k in range(n):
            at = t0 + timedelta(hours=7 * k)
            conn.execute(
                "INSERT INTO incidents (id, elder_id, community_id, kind, severity, status,"
                " opened_at, event_time, alert_at, first_notified_at, acknowledged_at,"
                " acknowledged_by, acknowledged_via, resolved_at, outcome) VALUES"
                " (%s,%s,%s,'sos','critical','resolved',%s,%s,%s,%s,%s,'联系人1','sms_reply',"
                " %s,'elder_fine')",
                (uuid.uuid4(), c.elders[k % 3].id, c.id, at, at, at, at + timedelta(seconds=4),
                 at + timedelta(seconds=30 + k), at + timedelta(minutes=20)))
    return c.id, "2026-03"


async def test_a_district_exports_the_month_with_a_reproducible_call_back_sample(
    platform: Settings, admin_http: httpx.AsyncClient,
) -> None:
    community, month = seed_month(platform, 23)
    preview = (await admin_http.get("/api/v1/reports/monthly",
                                    params={"community": community, "month": month})).json()
    assert preview["incidents"] == 23 and preview["sample"] == math.ceil(23 * 0.1)
    assert preview["summary"]["acknowledged_within_60s"] == 1.0

    r = await admin_http.get("/api/v1/reports/monthly.xlsx",
                             params={"community": community, "month": month})
    assert r.status_code == 200 and "spreadsheetml" in r.headers["content-type"]
    wb = load_workbook(io.BytesIO(r.content))
    assert wb.sheetnames == ["汇总", "事件明细", "回访抽样"]
    summary = {row[0]: row[1] for row in wb["汇总"].iter_rows(values_only=True)}
    assert summary["事件数"] == 23 and summary["60秒内确认比例"] == 1.0
    incidents = list(wb["事件明细"].iter_rows(values_only=True))
    assert len(incidents) == 1 + 23 and incidents[1][2] == "紧急呼叫（SOS）"
    assert incidents[1][6] == 30.0  # acknowledged 30 s after the alert
    sample = list(wb["回访抽样"].iter_rows(values_only=True))[1:]
    assert [row[0] for row in sample] == preview["sample_ids"]
    assert all(str(row[6]).startswith("+86") for row in sample), "a phone to call back"

    again = await admin_http.get("/api/v1/reports/monthly",
                                 params={"community": community, "month": month})
    assert again.json()["sample_ids"] == preview["sample_ids"], "the same sample every time"
    with psycopg.connect(platform.database_url) as conn:
        n = conn.execute("SELECT count(*) FROM audit_log WHERE action = 'export_report'"
                         " AND object_id = %s", (community,)).fetchone()
    assert n is not None and n[0] == 1


async def test_staff_of_another_community_cannot_read_its_report(platform: Settings) -> None:
    community, month = seed_month(platform, 2)
    other = make_community()
    save(platform.database_url, [other])
    username, password = duty_account(platform, other)
    async with httpx.AsyncClient(base_url=platform.public_base_url, timeout=10) as client:
        await staff_login(client, username, password)
        for path in ("/api/v1/reports/monthly", "/api/v1/reports/monthly.xlsx"):
            r = await client.get(path, params={"community": community, "month": month})
            assert r.status_code == 404, path
        bad = await client.get("/api/v1/reports/monthly",
                               params={"community": other.id, "month": "2026-13"})
        assert bad.status_code == 422


def test_sample_is_a_tenth_and_at_least_one() -> None:
    rows = [{"id": k} for k in range(7)]
    assert len(call_back_sample(rows, "c", "2026-03")) == 1
    assert len(call_back_sample([{"id": k} for k in range(40)], "c", "2026-03")) == 4
    assert call_back_sample(rows, "c", "2026-03") == call_back_sample(rows, "c", "2026-03")
    assert call_back_sample([], "c", "2026-03") == []


async def test_the_report_page_shows_the_month_and_downloads_the_workbook(
    platform: Settings, admin_login: tuple[str, str], browser: Browser,
) -> None:
    community, month = seed_month(platform, 12)
    page = await log_in(browser, platform, *admin_login)
    await page.goto(f"/reports?community={community}&month={month}")
    await expect(page.locator("#sample")).to_have_text("回访抽样：2 件（共 12 件事件）")
    await expect(page.locator("#summary")).to_contain_text("60秒内确认比例")
    async with page.expect_download() as info:
        await page.click("#download")
    download = await info.value
    assert download.suggested_filename == f"eldercare-{community}-{month}.xlsx"
    ARTIFACTS.mkdir(exist_ok=True)
    saved = ARTIFACTS / download.suggested_filename
    await download.save_as(saved)
    assert len(list(load_workbook(saved)["事件明细"].iter_rows())) == 13
    await screenshot(page, "console-reports.png")
    await page.context.close()
