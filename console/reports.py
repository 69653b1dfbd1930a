"""The monthly supervision report of one community (社区月度服务监督报表): a summary of the
response times, every incident of the month, and a random 10 % of them for call-back checks, as
an XLSX workbook a district opens in any spreadsheet.

The sample is drawn with a seed made of the community and the month, so exporting the same month
twice gives the same sample: a supervisor can show which incidents were chosen, and nobody can
redraw until a convenient one comes up."""

from __future__ import annotations

import hashlib
import io
import math
import random
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from openpyxl import Workbook
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.utils import get_column_letter
from psycopg import AsyncConnection

from foundation.i18n import t

SAMPLE_SHARE = 0.10
LOCAL_TZ = ZoneInfo("Asia/Shanghai")

INCIDENTS_SQL = """
SELECT i.id, i.kind, i.severity, e.name AS elder, e.id AS elder_id, e.phone AS elder_phone,
       (SELECT c.phone FROM contacts c WHERE c.elder_id = e.id ORDER BY c.priority LIMIT 1)
           AS contact_phone,
       coalesce(i.alert_at, i.opened_at) AS alert_at, i.first_notified_at, i.acknowledged_at,
       i.acknowledged_by, i.acknowledged_via, i.resolved_at, i.outcome, i.notes
FROM incidents i JOIN elders e ON e.id = i.elder_id
WHERE i.community_id = %(community)s AND NOT i.maintenance
  AND to_char(i.opened_at AT TIME ZONE 'Asia/Shanghai', 'YYYY-MM') = %(month)s
ORDER BY i.opened_at, i.id
"""


async def month_incidents(conn: AsyncConnection[Any], community: str, month: str
                          ) -> list[dict[str, Any]]:
    """Every (non-maintenance) incident the community opened in `month` (YYYY-MM, local)."""
    rows = await (await conn.execute(INCIDENTS_SQL, {"community": community, "month": month})
                  ).fetchall()
    return [dict(r) for r in rows]


def call_back_sample(incidents: list[dict[str, Any]], community: str, month: str
                     ) -> list[dict[str, Any]]:
    """10 % of the month's incidents (at least one when there are any), reproducibly."""
    if not incidents:
        return []
    n = max(1, math.ceil(len(incidents) * SAMPLE_SHARE))
    seed = int.from_bytes(hashlib.sha256(f"{community}/{month}".encode()).digest()[:8], "big")
    chosen = random.Random(seed).sample(range(len(incidents)), n)
    return [incidents[i] for i in sorted(chosen)]


def _seconds(later: datetime | None, earlier: datetime | None) -> float | None:
    return None if later is None or earlier is None else round(
        (later - earlier).total_seconds(), 1)


def _local(at: datetime | None) -> str:
    return at.astimezone(LOCAL_TZ).strftime("%Y-%m-%d %H:%M:%S") if at else ""


def _sheet(wb: Workbook, title: str, header: list[str], rows: list[list[Any]],
           first: bool = False) -> None:
    ws = wb.active if first else wb.create_sheet()
    assert ws is not None
    ws.title = title[:31]
    ws.append(header)
    for cell in ws[1]:
        cell.font = Font(bold=True)
        cell.fill = PatternFill("solid", fgColor="DDE7F5")
        cell.alignment = Alignment(wrap_text=True, vertical="top")
    for row in rows:
        ws.append(row)
    for i, name in enumerate(header, start=1):
        width = max([len(str(name)) * 2] + [len(str(r[i - 1])) for r in rows if r[i - 1]])
        ws.column_dimensions[get_column_letter(i)].width = min(60, max(10, width + 2))
    ws.freeze_panes = "A2"


def workbook(community: dict[str, Any], month: str, summary: dict[str, Any] | None,
             incidents: list[dict[str, Any]], lang: str = "zh-Hans") -> bytes:
    """The report as XLSX bytes: summary, every incident, and the call-back sample."""
    def tx(key: str, **values: Any) -> str:
        return t(f"report.{key}", lang, **values)

    wb = Workbook()
    s = summary or {}
    _sheet(wb, tx("sheet.summary"), [tx("item"), tx("value")], [
        [tx("community"), f"{community['name']} ({community['id']})"],
        [tx("month"), month],
        [tx("incidents"), s.get("incidents", len(incidents))],
        [tx("acknowledged"), s.get("acknowledged", 0)],
        [tx("resolved"), s.get("resolved", 0)],
        [tx("first_notification_p50"), s.get("first_notification_p50_s")],
        [tx("acknowledgement_p50"), s.get("acknowledgement_p50_s")],
        [tx("acknowledgement_p90"), s.get("acknowledgement_p90_s")],
        [tx("resolution_p50"), s.get("resolution_p50_s")],
        [tx("within_60s"), s.get("acknowledged_within_60s")],
        [tx("within_180s"), s.get("acknowledged_within_180s")],
        [tx("sample_rule"), tx("sample_rule_text", share=int(SAMPLE_SHARE * 100))],
        [tx("generated"), datetime.now(LOCAL_TZ).strftime("%Y-%m-%d %H:%M")],
    ], first=True)
    header = [tx("col.id"), tx("col.elder"), tx("col.kind"), tx("col.severity"),
              tx("col.alert_at"), tx("col.first_notified_s"), tx("col.acknowledged_s"),
              tx("col.acknowledged_by"), tx("col.resolved_s"), tx("col.outcome"),
              tx("col.notes")]

    def line(i: dict[str, Any]) -> list[Any]:
        return [str(i["id"]), i["elder"], t(f"kind.{i['kind']}", lang),
                t(f"severity.{i['severity']}", lang), _local(i["alert_at"]),
                _seconds(i["first_notified_at"], i["alert_at"]),
                _seconds(i["acknowledged_at"], i["alert_at"]),
                f"{i['acknowledged_by'] or ''} {i['acknowledged_via'] or ''}".strip(),
                _seconds(i["resolved_at"], i["alert_at"]),
                t(f"outcome.{i['outcome']}", lang) if i["outcome"] else "", i["notes"] or ""]

    _sheet(wb, tx("sheet.incidents"), header, [line(i) for i in incidents])
    sample = call_back_sample(incidents, community["id"], month)
    _sheet(wb, tx("sheet.sample"),
           [*header[:5], tx("col.outcome"), tx("col.phone"), tx("col.called_at"),
            tx("col.called_by"), tx("col.call_result")],
           [[*line(i)[:5], line(i)[9], i["contact_phone"] or i["elder_phone"] or "", "", "", ""]
            for i in sample])
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()
