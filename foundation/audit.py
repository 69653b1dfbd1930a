"""The audit log: every view of and action on an incident or elder record, and every login."""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request
from psycopg import AsyncConnection

from foundation.security import Principal


def address_of(request: Request) -> str:
    """The caller's address: the connecting peer, or the X-Forwarded-For client only when the
    peer is one of ELDERCARE_CONSOLE_TRUSTED_PROXIES (none by default; `eldercare.services`
    configures uvicorn's proxy headers from it)."""
    return request.client.host if request.client else ""


def client_of(request: Request) -> str:
    """Address and browser of the caller, as recorded with each audit row."""
    return f"{address_of(request)} {request.headers.get('user-agent', '')}"[:300]


async def record(
    conn: AsyncConnection[Any], who: Principal | str, action: str, object_type: str = "",
    object_id: str = "", community_id: str | None = None, client: str = "", **detail: Any,
) -> None:
    """Append one audit row in the caller's transaction (so it commits with the action)."""
    username, role = (who.staff_id, who.role) if isinstance(who, Principal) else (who, "")
    await conn.execute(
        "INSERT INTO audit_log (username, role, action, object_type, object_id, community_id,"
        " client, detail) VALUES (%s,%s,%s,%s,%s,%s,%s,%s)",
        (username, role, action, object_type, object_id, community_id, client,
         json.dumps(detail, ensure_ascii=False, default=str)),
    )


async def record_board_views(
    conn: AsyncConnection[Any], who: Principal, incidents: list[dict[str, Any]], client: str,
) -> None:
    """One `view_board` row per staff member and incident, the first time it is on their board
    (the board reloads on every timeline row; a row per reload would drown the log)."""
    if not incidents:
        return
    await conn.execute(
        "INSERT INTO audit_log (username, role, action, object_type, object_id, community_id,"
        " client) SELECT %(u)s, %(r)s, 'view_board', 'incident', x.id, x.cid, %(c)s"
        " FROM unnest(%(ids)s::text[], %(cids)s::text[]) AS x(id, cid)"
        " WHERE NOT EXISTS (SELECT 1 FROM audit_log a WHERE a.object_type = 'incident'"
        " AND a.object_id = x.id AND a.username = %(u)s AND a.action = 'view_board')",
        {"u": who.staff_id, "r": who.role, "c": client,
         "ids": [str(i["id"]) for i in incidents], "cids": [i["community_id"] for i in incidents]},
    )
