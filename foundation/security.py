"""The one place for security: who is asking, and what they may see.

Staff log in on the console (`console/accounts.py`) and get a random session token in
an HttpOnly, SameSite=Strict cookie; the server keeps only its SHA-256 with the session's CSRF
token. `current_principal` is the FastAPI dependency every staff-facing route uses: it answers
401 without a live session and 403 when a state-changing request lacks the CSRF header
(double submit: the same token is in a cookie the console's JavaScript reads)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Any, Literal

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from fastapi import Depends, HTTPException, Request
from psycopg import AsyncConnection

Role = Literal["district_admin", "street_supervisor", "duty_staff", "system"]
ROLES: tuple[Role, ...] = ("district_admin", "street_supervisor", "duty_staff")

SESSION_COOKIE = "eldercare_session"
CSRF_COOKIE = "eldercare_csrf"
CSRF_HEADER = "X-CSRF-Token"
SESSION_TTL = timedelta(hours=12)  # one shift; the console sends staff back to the login page
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

_hasher = PasswordHasher()  # argon2id with the library's current recommended parameters
# Verified when the username is unknown, so a failed login takes as long either way.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


@dataclass(frozen=True)
class Principal:
    """An authenticated staff member (or the system itself)."""

    staff_id: str
    role: Role
    community_ids: frozenset[str] | None  # None: every community
    name: str = ""
    district: str = ""  # a district admin's district; "" for a platform-wide admin

    @property
    def is_admin(self) -> bool:
        """A district admin (of one district or of all) or the system itself."""
        return self.role in ("district_admin", "system")

    def can_manage_district(self, district: str) -> bool:
        """An admin of every district, or of this one."""
        return self.is_admin and self.district in ("", district)

    def can_see(self, community_id: str) -> bool:
        return self.community_ids is None or community_id in self.community_ids

    @property
    def sees_personal_data(self) -> bool:
        """ID numbers and medical notes: admins and the elder's own duty staff. A street
        supervisor oversees response across communities and does not need them."""
        return self.role in ("district_admin", "duty_staff", "system")


SYSTEM = Principal("system", "system", None, "system")


def require_district_admin(principal: Principal, refusal: str) -> None:
    """403 with `refusal` unless the principal is a district admin (or the system itself). A
    district admin of one district is still limited to its communities by `community_ids`."""
    if not principal.is_admin:
        raise HTTPException(403, refusal)


def hash_password(password: str) -> str:
    """An argon2id PHC string for storage."""
    return _hasher.hash(password)


async def hash_password_off_loop(password: str) -> str:
    """`hash_password` in a worker thread: argon2 takes tens of milliseconds of CPU on purpose,
    which on the event loop would stall every live stream and request of the process."""
    return await asyncio.to_thread(hash_password, password)


async def verify_password_off_loop(stored: str | None, password: str) -> bool:
    """`verify_password` in a worker thread (see `hash_password_off_loop`)."""
    return await asyncio.to_thread(verify_password, stored, password)


def verify_password(stored: str | None, password: str) -> bool:
    """True when `password` matches `stored`; a missing hash costs the same time and fails."""
    try:
        return _hasher.verify(stored or _DUMMY_HASH, password) and stored is not None
    except (VerificationError, InvalidHashError):
        return False


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def open_session(conn: AsyncConnection[Any], username: str) -> tuple[str, str]:
    """Create a server-side session; returns (session token, CSRF token)."""
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(24)
    await conn.execute("DELETE FROM staff_sessions WHERE expires_at < now()")  # housekeeping
    await conn.execute(
        "INSERT INTO staff_sessions (token_hash, username, csrf_token, expires_at)"
        " VALUES (%s, %s, %s, now() + %s)", (token_hash(token), username, csrf, SESSION_TTL),
    )
    return token, csrf


async def close_session(conn: AsyncConnection[Any], token: str) -> None:
    await conn.execute("DELETE FROM staff_sessions WHERE token_hash = %s", (token_hash(token),))


_SESSION = """
SELECT a.username, a.display_name, a.role, a.community_id, a.district, a.street, s.csrf_token
FROM staff_sessions s JOIN staff_accounts a ON a.username = s.username
WHERE s.token_hash = %s AND s.expires_at > now() AND a.active
"""


async def principal_for_account(conn: AsyncConnection[Any], account: dict[str, Any]) -> Principal:
    """The principal of a staff account row, its scope resolved to community ids."""
    role: Role = account["role"]
    scope: frozenset[str] | None = None
    if role == "district_admin" and account["district"]:
        rows = await (await conn.execute(
            "SELECT id FROM communities WHERE district = %s", (account["district"],))).fetchall()
        scope = frozenset(r["id"] for r in rows)
    elif role == "duty_staff":
        scope = frozenset({account["community_id"]})
    elif role == "street_supervisor":
        rows = await (await conn.execute(
            "SELECT id FROM communities WHERE street = %s AND (%s = '' OR district = %s)",
            (account["street"], account["district"], account["district"]),
        )).fetchall()
        scope = frozenset(r["id"] for r in rows)
    district = account["district"] if role == "district_admin" else ""
    return Principal(account["username"], role, scope, account["display_name"], district)


async def session_principal(
    conn: AsyncConnection[Any], token: str,
) -> tuple[Principal, str] | None:
    """(principal, CSRF token) of a live session, or None."""
    row = await (await conn.execute(_SESSION, (token_hash(token),))).fetchone()
    if row is None:
        return None
    return await principal_for_account(conn, row), row["csrf_token"]


async def optional_principal(request: Request) -> Principal | None:
    """The logged-in staff member, or None (pages redirect to the login page)."""
    cached: Principal | None = getattr(request.state, "principal", None)
    if cached is not None:
        return cached
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    async with request.app.state.pool.connection() as conn:
        found = await session_principal(conn, token)
    if found is None:
        return None
    principal, csrf = found
    if request.method not in SAFE_METHODS:
        sent = request.headers.get(CSRF_HEADER, "")
        if not hmac.compare_digest(sent.encode(), csrf.encode()):
            raise HTTPException(403, f"missing or wrong {CSRF_HEADER} header")
    request.state.principal = principal
    return principal


async def current_principal(request: Request) -> Principal:
    """FastAPI dependency: the logged-in staff member; 401 without a session, 403 without the
    CSRF header on a state-changing request."""
    principal = await optional_principal(request)
    if principal is None:
        raise HTTPException(401, "login required", headers={"WWW-Authenticate": "Session"})
    return principal


# For route signatures: `principal: CurrentPrincipal` (FastAPI's Annotated form of Depends).
CurrentPrincipal = Annotated[Principal, Depends(current_principal)]
MaybePrincipal = Annotated[Principal | None, Depends(optional_principal)]
