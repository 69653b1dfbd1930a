"""The service statistics page (/stats) in headless Chromium against the running platform: a
community's months in a table and three ECharts charts (legend in Chinese, then English), and
nothing of it for the staff of another community."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx
import psycopg
from playwright.async_api import Browser, Page, expect

from devices.registry import save
from foundation.config import Settings
from tests.conftest import make_community, staff_login
from tests.test_console_access import duty_account
from tests.test_console_browser import log_in, screenshot

RANGE = "since=2026-02&until=2026-04"


def seed_two_months(settings: Settings) -> str:
    """A community with two incidents in March 2026 (acknowledged after 30 s and 90 s, both
    resolved) and one in April (acknowledged after 200 s, still open); returns its id."""
    c = make_community(elders=2)
    save(settings.database_url, [c])
    incidents = [  # (alert time, seconds to acknowledge, resolved)
        (datetime(2026, 3, 5, 2, 0, tzinfo=UTC), 30, True),
        (datetime(2026, 3, 20, 8, 0, tzinfo=UTC), 90, True),
        (datetime(2026, 4, 9, 3, 0, tzinfo=UTC), 200, False),
    ]
    with psycopg.connect(settings.database_url) as conn:
        for k, (at, ack_s, resolved) in enumerate(incidents):
            conn.execute(
                "INSERT INTO incidents (id, elder_id, community_id, kind, severity, status,"
                " opened_at, event_time, alert_at, first_notified_at, acknowledged_at,"
                " acknowledged_by, acknowledged_via, resolved_at) VALUES"
                " (%s,%s,%s,'sos','critical',%s,%s,%s,%s,%s,%s,'联系人1','sms_reply',%s)",
                (uuid.uuid4(), c.elders[k % 2].id, c.id, "resolved" if resolved else "acknowledged",
                 at, at, at, at + timedelta(seconds=5), at + timedelta(seconds=ack_s),
                 at + timedelta(minutes=30) if resolved else None))
    return c.id


async def cell(page: Page, month: str, col: str) -> str:
    return await page.locator(f'#stats-table tr[data-month="{month}"] td[data-col="{col}"]'
                              ).inner_text()


async def chart_option(page: Page, chart: str) -> dict[str, object]:
    """The ECharts option of a chart: its series names are what the legend shows."""
    option: dict[str, object] = await page.evaluate(
        "(c) => { const box = document.querySelector(`[data-chart='${c}']`);"
        " const o = echarts.getInstanceByDom(box).getOption();"
        " return { series: o.series.map((s) => s.name),"
        " markLine: (o.series[0].markLine || { data: [] }).data.map((d) => d.name) }; }", chart)
    return option


async def test_the_stats_page_charts_and_tabulates_a_communitys_months(
    platform: Settings, admin_login: tuple[str, str], browser: Browser,
) -> None:
    community = seed_two_months(platform)
    page = await log_in(browser, platform, *admin_login)
    await expect(page.locator('nav a[href="/stats"]')).to_have_text("服务统计")
    await page.goto(f"/stats?community={community}&{RANGE}")
    await expect(page.locator("#stats-body")).to_have_attribute(
        "data-drawn", f"{community}|2026-02|2026-04")
    assert await cell(page, "2026-02", "incidents") == "0"
    assert await cell(page, "2026-03", "incidents") == "2"
    assert await cell(page, "2026-03", "resolved") == "2"
    assert await cell(page, "2026-03", "acknowledgement_p50") == "60"
    assert await cell(page, "2026-03", "acknowledgement_p90") == "84"  # 30 + 0.9 * (90 - 30)
    assert await cell(page, "2026-03", "within_60s") == "50%"
    assert await cell(page, "2026-03", "within_180s") == "100%"
    assert await cell(page, "2026-04", "acknowledged") == "1"
    assert await cell(page, "2026-04", "resolved") == "0"
    assert await cell(page, "2026-04", "within_180s") == "0%"
    assert await cell(page, "2026-04", "resolution_p50") == "—"

    shares = await chart_option(page, "shares")
    assert shares == {"series": ["60秒内确认比例", "180秒内确认比例"], "markLine": ["目标 90%"]}
    # The legend as drawn: the SVG renderer writes it as text.
    await expect(page.locator('[data-chart="shares"] svg')).to_contain_text("60秒内确认比例")
    times = await chart_option(page, "times")
    assert "确认用时90分位（秒）" in times["series"]  # type: ignore[operator]
    await screenshot(page, "console-stats.png", full_page=True)

    await page.click("#lang")
    await expect(page.locator('nav a[href="/stats"]')).to_have_text("Statistics")
    await page.goto(f"/stats?community={community}&{RANGE}")
    await expect(page.locator("#stats-body")).to_have_attribute(
        "data-drawn", f"{community}|2026-02|2026-04")
    await expect(page.locator('[data-chart="counts"] svg')).to_contain_text("Acknowledged")
    counts = await chart_option(page, "counts")
    assert counts["series"] == ["Incidents", "Acknowledged", "Resolved"]
    assert await cell(page, "2026-03", "within_60s") == "50%"
    await page.context.close()


async def test_staff_of_another_community_see_none_of_its_statistics(
    platform: Settings, browser: Browser,
) -> None:
    community = seed_two_months(platform)
    other = make_community()
    save(platform.database_url, [other])
    username, password = duty_account(platform, other)
    page = await log_in(browser, platform, username, password)
    await page.goto(f"/stats?community={community}&{RANGE}")
    await expect(page.locator("#stats-none")).to_be_visible()  # all they may see: no incidents
    assert await page.locator(f'#community option[value="{community}"]').count() == 0
    assert await page.locator("#stats-table").count() == 0
    await page.context.close()
    async with httpx.AsyncClient(base_url=platform.public_base_url, timeout=10) as client:
        await staff_login(client, username, password)
        r = await client.get("/api/v1/stats", params={"community": community})
        assert r.status_code == 403
        pooled = (await client.get("/api/v1/stats", params={"pooled": "true"})).json()
        assert pooled["rows"] == []
        assert (await client.get("/api/v1/stats", params={"since": "2026-13"})).status_code == 422


async def test_pooled_statistics_add_up_the_communities_per_month(
    platform: Settings, admin_http: httpx.AsyncClient,
) -> None:
    """All communities a login sees together: one row per month (the district's view)."""
    seed_two_months(platform)
    seed_two_months(platform)
    r = (await admin_http.get("/api/v1/stats", params={
        "pooled": "true", "since": "2026-04", "until": "2026-04"})).json()
    assert [row["community_id"] for row in r["rows"]] == [None]
    assert r["rows"][0]["month"] == "2026-04" and r["rows"][0]["incidents"] >= 2
    assert r["target_share"] == 0.9
