"""Who may change the registry (elders, contacts, devices, away periods, ledger imports).

District admins and a community's own duty staff keep its records; a street supervisor oversees
the response across communities, sees no personal data and changes nothing (403). Scope still
applies on top: everyone only within their own communities."""

from __future__ import annotations

from fastapi import HTTPException, Request

from foundation.security import SAFE_METHODS, Principal, current_principal

REGISTRY_WRITERS = frozenset({"district_admin", "duty_staff", "system"})
READ_ONLY = "street supervisors read the registry; duty staff or a district admin change it"


def require_registry_writer(principal: Principal) -> None:
    """403 unless the principal keeps registry records."""
    if principal.role not in REGISTRY_WRITERS:
        raise HTTPException(403, READ_ONLY)


async def registry_writes(request: Request) -> None:
    """Router dependency for the registry's admin API: writes need a registry writer."""
    if request.method not in SAFE_METHODS:
        require_registry_writer(await current_principal(request))
