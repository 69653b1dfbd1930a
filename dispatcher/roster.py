"""Who is on duty now, read from each staff member's `duty_roster` in the community's own time.

A roster is a list of shifts {weekday (0 = Monday), start, end} in local time; a shift whose end
is not after its start runs past midnight into the next day. A staff member with an empty roster
is on duty whenever the `on_duty` switch says so (the switch also takes anyone off duty). When
nobody of the community is on shift, the street level answers (street-scoped staff of the
community's street on shift), then the district administrators of its district."""

from __future__ import annotations

from datetime import UTC, datetime, time
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from psycopg import AsyncConnection

DEFAULT_TIME_ZONE = "Asia/Shanghai"


def zone(name: str | None) -> ZoneInfo:
    """The community's time zone; the default for an empty or unknown name."""
    try:
        return ZoneInfo(name or DEFAULT_TIME_ZONE)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo(DEFAULT_TIME_ZONE)


def _t(value: Any) -> time:
    return value if isinstance(value, time) else time.fromisoformat(str(value))


def on_shift(roster: list[dict[str, Any]], local: datetime) -> bool:
    """Whether `local` (the community's wall-clock time) falls in one of the roster's shifts;
    True for an empty roster."""
    if not roster:
        return True
    now, day = local.time(), local.weekday()
    for shift in roster:
        weekday, start, end = int(shift["weekday"]), _t(shift["start"]), _t(shift["end"])
        if start < end:
            if day == weekday and start <= now < end:
                return True
        elif (day == weekday and now >= start) or (day == (weekday + 1) % 7 and now < end):
            return True
    return False


_CANDIDATES = """
SELECT s.id, s.name, s.phone, s.role, s.scope, s.duty_roster, c.time_zone,
       CASE WHEN s.community_id = c.id AND s.scope = 'community' THEN 0
            WHEN s.scope = 'street' AND s.street <> '' AND s.street = c.street THEN 1
            ELSE 2 END AS level
FROM communities c JOIN staff s ON s.active AND s.on_duty AND s.phone <> '' AND (
    (s.community_id = c.id AND s.scope = 'community')
    OR (s.scope = 'street' AND s.street <> '' AND s.street = c.street)
    OR (s.role = 'district_admin' AND c.district <> '' AND s.community_id IN
        (SELECT id FROM communities WHERE district = c.district)))
WHERE c.id = %s
ORDER BY level, s.id
"""

LEVELS = ("community", "street", "district")


async def on_duty(
    conn: AsyncConnection[Any], community_id: str, now: datetime | None = None,
) -> tuple[list[dict[str, Any]], str]:
    """The staff to reach now and their level ("community", "street", "district"); an empty
    list with level "none" when nobody at any level is on shift."""
    # One read: the community's time zone comes with each candidate (no candidate, no shift).
    rows = await (await conn.execute(_CANDIDATES, (community_id,))).fetchall()
    if not rows:
        return [], "none"
    local = (now or datetime.now(UTC)).astimezone(zone(rows[0]["time_zone"]))
    for level in range(len(LEVELS)):
        people = [r for r in rows if r["level"] == level and on_shift(r["duty_roster"], local)]
        if people:
            return people, LEVELS[level]
    return [], "none"


def duty_lead(staff: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The lead among the staff on shift: a street supervisor if one is, else the first."""
    leads = [s for s in staff if s["role"] in ("street_supervisor", "district_admin")]
    return (leads or staff)[:1]

