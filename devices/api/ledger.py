"""Ledger import (CSV or Excel), all or nothing."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Query, Request

from devices import ledger_import
from devices.api.common import publish_mqtt_auth, record, transaction
from foundation.security import CurrentPrincipal

router = APIRouter()


@router.post("/import", responses={422: {"description": "row-by-row errors; nothing imported"}})
async def import_ledger(
    request: Request, principal: CurrentPrincipal,
    filename: str = Query(..., description="ledger.csv or ledger.xlsx: the"
                                            " extension says the format"),
    kind: str = Query("", description="for CSV: elders, contacts or devices (default: guessed"
                      " from the header)"),
) -> dict[str, Any]:
    """Import a ledger sent as the raw request body, all or nothing."""
    content = await request.body()
    try:
        async with transaction(request) as conn:
            result = await ledger_import.import_ledger(conn, filename, content, kind, principal)
            await record(conn, request, principal, "import", "ledger", filename, None,
                         counts=result.counts)
    except ledger_import.LedgerRejected as exc:
        raise HTTPException(422, [e.as_detail() for e in exc.errors]) from None
    if result.counts.get("devices"):
        await publish_mqtt_auth(request)
    return {"imported": result.counts, "mqtt": result.mqtt_logins}
