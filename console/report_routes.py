"""The monthly supervision report: a preview for the page and the XLSX download, for the staff
who can see the community; every export is audited (it holds names and phone numbers)."""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import Response

from console import reports
from dispatcher.stats import service_stats
from foundation import audit
from foundation.security import CurrentPrincipal, Principal

router = APIRouter(prefix="/api/v1/reports", tags=["reports"])

_MONTH = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


async def _month_of(request: Request, principal: Principal, community: str, month: str
                    ) -> tuple[dict[str, Any], dict[str, Any] | None, list[dict[str, Any]]]:
    if not _MONTH.match(month):
        raise HTTPException(422, "month must be YYYY-MM")
    if not principal.can_see(community):
        raise HTTPException(404, f"community {community!r} not found")
    async with request.app.state.pool.connection() as conn:
        row = await (await conn.execute(
            "SELECT id, name FROM communities WHERE id = %s", (community,))).fetchone()
        if row is None:
            raise HTTPException(404, f"community {community!r} not found")
        stats = await service_stats(conn, principal, community, month)
        incidents = await reports.month_incidents(conn, community, month)
    return dict(row), (stats[0] if stats else None), incidents


@router.get("/monthly")
async def monthly_preview(request: Request, principal: CurrentPrincipal, community: str,
                          month: str) -> dict[str, Any]:
    """The report's figures and how many incidents the call-back sample holds."""
    info, summary, incidents = await _month_of(request, principal, community, month)
    sample = reports.call_back_sample(incidents, community, month)
    return {"community": info, "month": month, "summary": summary,
            "incidents": len(incidents), "sample": len(sample),
            "sample_ids": [str(i["id"]) for i in sample]}


@router.get("/monthly.xlsx")
async def monthly_xlsx(request: Request, principal: CurrentPrincipal, community: str,
                       month: str, lang: str = "zh-Hans") -> Response:
    """The workbook: summary, every incident of the month, and the 10 % call-back sample."""
    info, summary, incidents = await _month_of(request, principal, community, month)
    body = reports.workbook(info, month, summary, incidents, lang)
    async with request.app.state.pool.connection() as conn:
        await audit.record(conn, principal, "export_report", "community", community, community,
                           audit.client_of(request), month=month, incidents=len(incidents))
    name = f"eldercare-{community}-{month}.xlsx"
    return Response(body, media_type=XLSX,
                    headers={"Content-Disposition": f'attachment; filename="{name}"',
                             "Cache-Control": "no-store"})
