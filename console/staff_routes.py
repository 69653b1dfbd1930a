"""District admins' API: staff logins (create or reset, list, deactivate, unlock) and the
audit log. Every change is itself audited."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request
from pydantic import BaseModel, Field

from console import throttle
from console.accounts import Account, create_account_async
from foundation import audit
from foundation.security import CurrentPrincipal, Principal, require_district_admin

router = APIRouter()


class NewAccount(BaseModel):
    username: str = Field(pattern=r"^[A-Za-z0-9_.-]{2,50}$")
    display_name: str = Field(min_length=1, max_length=100)
    role: Literal["district_admin", "street_supervisor", "duty_staff"]
    password: str = Field(min_length=8, max_length=200)
    community_id: str | None = None
    district: str = ""
    street: str = ""
    staff_id: str | None = None


class AccountChange(BaseModel):
    active: bool


ADMINS_ONLY = "only a district admin manages staff accounts and reads the audit log"
OTHER_DISTRICT = "this account belongs to another district"

# The accounts a district admin of district %(d)s manages: its own district's admins and street
# supervisors, and the duty staff of its communities. %(d)s = '' (a platform admin): all.
_IN_DISTRICT = """(%(d)s = '' OR a.district = %(d)s
  OR a.community_id IN (SELECT id FROM communities WHERE district = %(d)s))"""


async def _district_of_community(conn: Any, community_id: str | None) -> str | None:
    if not community_id:
        return None
    row = await (await conn.execute(
        "SELECT district FROM communities WHERE id = %s", (community_id,))).fetchone()
    return None if row is None else str(row["district"])


async def _check_new_account(conn: Any, principal: Principal, body: NewAccount) -> None:
    """A district admin of one district creates accounts of that district only (and never a
    platform-wide admin)."""
    if not principal.district:
        return
    district = await _district_of_community(conn, body.community_id) \
        if body.role == "duty_staff" else body.district
    if district != principal.district:
        raise HTTPException(403, OTHER_DISTRICT)


async def _managed_account(conn: Any, principal: Principal, username: str) -> dict[str, Any]:
    """The account row if this admin manages it; 404 otherwise (as if it did not exist)."""
    row = await (await conn.execute(
        f"SELECT a.community_id FROM staff_accounts a WHERE a.username = %(u)s AND {_IN_DISTRICT}",
        {"u": username, "d": principal.district})).fetchone()
    if row is None:
        raise HTTPException(404, f"no staff account {username!r}")
    return dict(row)


@router.post("/api/v1/staff-accounts", status_code=201)
async def new_account(
    body: NewAccount, request: Request, principal: CurrentPrincipal,
) -> dict[str, str]:
    """Create a staff login, or reset its password (which also clears its login locks)."""
    require_district_admin(principal, ADMINS_ONLY)
    account = Account(body.username, body.display_name, body.role, body.community_id,
                      body.district, body.street, body.staff_id)
    async with request.app.state.pool.connection() as conn:
        await _check_new_account(conn, principal, body)
        existing = await (await conn.execute(
            "SELECT 1 FROM staff_accounts WHERE username = %s", (body.username,))).fetchone()
        if existing is not None:  # a reset: only of an account this admin manages
            await _managed_account(conn, principal, body.username)
        try:
            await create_account_async(conn, account, body.password)
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from None
        except Exception as exc:  # a check constraint or an unknown community
            raise HTTPException(422, f"account rejected: {exc}") from None
        await audit.record(conn, principal, "create_account", "staff_account", body.username,
                           body.community_id, audit.client_of(request), role=body.role)
    return {"username": body.username}


@router.get("/api/v1/staff-accounts")
async def list_accounts(request: Request, principal: CurrentPrincipal) -> dict[str, Any]:
    """Every login with its scope, whether it is active, and whether a login lock is in force
    (from one address or from everywhere)."""
    require_district_admin(principal, ADMINS_ONLY)
    async with request.app.state.pool.connection() as conn:
        rows = await (await conn.execute(
            "SELECT a.username, a.display_name, a.role, a.community_id, c.name AS community_name,"
            " a.district, a.street, a.active, a.created_at,"
            " EXISTS (SELECT 1 FROM login_failures f WHERE f.username = a.username"
            "   AND f.locked_until > now()) AS locked,"
            " (SELECT max(s.last_seen) FROM staff_sessions s WHERE s.username = a.username)"
            "   AS last_active"
            " FROM staff_accounts a LEFT JOIN communities c ON c.id = a.community_id"
            f" WHERE {_IN_DISTRICT} ORDER BY a.active DESC, a.role, a.username",
            {"d": principal.district},
        )).fetchall()
    return {"accounts": rows}


@router.patch("/api/v1/staff-accounts/{username}")
async def change_account(
    username: str, body: AccountChange, request: Request, principal: CurrentPrincipal,
) -> dict[str, Any]:
    """Deactivate a login (its sessions end at once and it can no longer sign in; its audit
    trail stays) or activate it again."""
    require_district_admin(principal, ADMINS_ONLY)
    if not body.active and username == principal.staff_id:
        raise HTTPException(409, "you cannot deactivate your own account")
    async with request.app.state.pool.connection() as conn:
        await _managed_account(conn, principal, username)
        row = await (await conn.execute(
            "UPDATE staff_accounts SET active = %s WHERE username = %s RETURNING community_id",
            (body.active, username))).fetchone()
        if row is None:
            raise HTTPException(404, f"no staff account {username!r}")
        if not body.active:
            await conn.execute("DELETE FROM staff_sessions WHERE username = %s", (username,))
        await audit.record(conn, principal, "activate_account" if body.active
                           else "deactivate_account", "staff_account", username,
                           row["community_id"], audit.client_of(request))
    return {"username": username, "active": body.active}


@router.post("/api/v1/staff-accounts/{username}/unlock")
async def unlock_account(
    username: str, request: Request, principal: CurrentPrincipal,
) -> dict[str, Any]:
    """Lift every login lock on the account (from one address or from everywhere)."""
    require_district_admin(principal, ADMINS_ONLY)
    async with request.app.state.pool.connection() as conn:
        row = await _managed_account(conn, principal, username)
        await throttle.unlock(conn, username)
        await audit.record(conn, principal, "unlock_account", "staff_account", username,
                           row["community_id"], audit.client_of(request))
    return {"username": username, "locked": False}


@router.get("/api/v1/audit")
async def audit_log(
    request: Request, principal: CurrentPrincipal,
    username: str | None = None, action: str | None = None,
    object_type: str | None = None, object_id: str | None = None,
    community_id: str | None = None, since: datetime | None = None,
    before_id: Annotated[int | None, Query(ge=1)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> dict[str, Any]:
    """The audit log, newest first, filtered by any of its columns. Page back with
    `before_id` = the `next_before_id` of the previous page."""
    require_district_admin(principal, ADMINS_ONLY)
    where: list[str] = ["true"]
    args: list[object] = []
    for column, value in (("username", username), ("action", action),
                          ("object_type", object_type), ("object_id", object_id),
                          ("community_id", community_id)):
        if value:
            where.append(f"{column} = %s")
            args.append(value)
    if since is not None:
        where.append("at >= %s")
        args.append(since)
    if before_id is not None:
        where.append("id < %s")
        args.append(before_id)
    if principal.community_ids is not None:  # a district admin of one district
        where.append("(community_id = ANY(%s) OR username IN (SELECT a.username FROM"
                     " staff_accounts a WHERE a.district = %s OR a.community_id = ANY(%s)))")
        scope = sorted(principal.community_ids)
        args += [scope, principal.district, scope]
    async with request.app.state.pool.connection() as conn:
        rows = await (await conn.execute(
            "SELECT id, at, username, role, action, object_type, object_id, community_id,"
            f" client, detail FROM audit_log WHERE {' AND '.join(where)}"
            " ORDER BY id DESC LIMIT %s", [*args, limit + 1])).fetchall()
    more = len(rows) > limit
    rows = rows[:limit]
    return {"entries": rows, "next_before_id": rows[-1]["id"] if more else None}
