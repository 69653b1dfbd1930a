"""The one place for security: who is asking, and what they may see.

`current_principal` is the FastAPI dependency every staff-facing route uses. Until staff login
exists it answers with an all-seeing system principal; the console's login replaces it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from fastapi import Request

Role = Literal["district_admin", "street_supervisor", "duty_staff", "system"]


@dataclass(frozen=True)
class Principal:
    """An authenticated staff member (or the system itself)."""

    staff_id: str
    role: Role
    community_ids: frozenset[str] | None  # None: every community

    def can_see(self, community_id: str) -> bool:
        return self.community_ids is None or community_id in self.community_ids

    @property
    def sees_personal_data(self) -> bool:
        """ID numbers and medical notes: admins and the elder's own duty staff."""
        return True


SYSTEM = Principal("system", "system", None)


async def current_principal(request: Request) -> Principal:
    return SYSTEM
