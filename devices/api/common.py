"""What every resource of the admin API shares, written once: the transaction, the community
scope of a principal, paging, partial updates, audit rows, errors shaped like FastAPI's,
and the lookups that answer 404 for what the principal may not see."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import HTTPException, Query, Request
from psycopg.types.json import Jsonb

from devices import provisioning
from devices.registry import AsyncConn, Row
from foundation import audit
from foundation.security import Principal

Limit = Query(50, ge=1, le=500)
Offset = Query(0, ge=0)


def field_error(status: int, field: str, msg: str) -> HTTPException:
    """An error naming the field at fault, shaped like FastAPI's validation errors."""
    return HTTPException(status, [{"loc": ["body", field], "msg": msg, "type": "value_error"}])


def not_found(what: str, key: str) -> HTTPException:
    return HTTPException(404, f"{what} {key!r} not found")


@asynccontextmanager
async def transaction(request: Request) -> AsyncIterator[AsyncConn]:
    """One connection from the app's pool, in one transaction committed on exit."""
    async with request.app.state.pool.connection() as conn, conn.transaction():
        yield conn


async def publish_mqtt_auth(request: Request) -> None:
    """Re-render the broker's password file and ACL, after a commit that changed devices."""
    s = request.app.state.settings
    await asyncio.to_thread(provisioning.publish, s.database_url, s.mqtt_auth_dir)


async def record(
    conn: AsyncConn, request: Request, principal: Principal, action: str, object_type: str,
    object_id: str, community_id: str | None, **detail: Any,
) -> None:
    """One audit row for this request, committed with its transaction."""
    await audit.record(conn, principal, action, object_type, object_id, community_id,
                       audit.client_of(request), api="registry", **detail)


def scope(principal: Principal, column: str, where: list[str], params: list[Any]) -> None:
    if principal.community_ids is not None:
        where.append(f"{column} = ANY(%s)")
        params.append(list(principal.community_ids))


async def page(
    conn: AsyncConn, sql: str, where: list[str], params: list[Any], order: str,
    limit: int, offset: int,
) -> tuple[list[Row], int]:
    clause = " WHERE " + " AND ".join(where) if where else ""
    rows = await (await conn.execute(
        f"SELECT *, count(*) OVER () AS total FROM ({sql}) r{clause} ORDER BY {order}"
        " LIMIT %s OFFSET %s", [*params, limit, offset])).fetchall()
    total = rows[0].pop("total") if rows else 0
    for r in rows[1:]:
        r.pop("total")
    return rows, int(total)


def paged(items: list[Row], total: int, limit: int, offset: int) -> dict[str, Any]:
    return {"items": items, "total": total, "limit": limit, "offset": offset}


def set_clause(changes: dict[str, Any]) -> tuple[str, list[Any]]:
    return ", ".join(f"{k} = %s" for k in changes), [
        Jsonb(v) if isinstance(v, list | dict) else v for v in changes.values()]


async def elder_row(conn: AsyncConn, principal: Principal, elder_id: str) -> Row:
    row = await (await conn.execute("SELECT * FROM elders WHERE id = %s", (elder_id,))).fetchone()
    if row is None or not principal.can_see(row["community_id"]):
        raise not_found("elder", elder_id)
    return row


async def check_community(conn: AsyncConn, principal: Principal, community_id: str) -> None:
    row = await (await conn.execute(
        "SELECT active FROM communities WHERE id = %s", (community_id,))).fetchone()
    if row is None or not principal.can_see(community_id):
        raise field_error(422, "community_id", f"no community {community_id!r}")
    if not row["active"]:
        raise field_error(422, "community_id", f"community {community_id!r} is deactivated")


def validation_errors(exc: ValueError) -> list[dict[str, Any]]:
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):
        return [{"loc": ["body", *e["loc"]], "msg": e["msg"], "type": e["type"]}
                for e in exc.errors(include_url=False, include_context=False)]
    return [{"loc": ["body"], "msg": str(exc), "type": "value_error"}]
