"""Service statistics API: time from alert to first notification, to acknowledgement and to
resolution, and the share of incidents acknowledged within 60 s and 180 s (the telecare answer-time
targets), per community and month (in the community's own time zone), or per month for all the
communities a login may see together (`pooled`). Maintenance incidents are left out."""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request

from foundation.security import Principal, current_principal

router = APIRouter(prefix="/api/v1/stats", tags=["stats"])

_MONTH = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")

# The share of incidents to acknowledge within 60 s and within 180 s that the console's /stats
# page draws as its target line. A local service target, not a published standard: change it
# here to the target your district sets.
ACK_TARGET_SHARE = 0.9


def _timing(name: str, end: str) -> str:
    secs = f"extract(epoch FROM {end} - a)"
    return (
        f"round(percentile_cont(0.5) WITHIN GROUP (ORDER BY {secs})::numeric, 1) AS {name}_p50_s,"
        f" round(percentile_cont(0.9) WITHIN GROUP (ORDER BY {secs})::numeric, 1) AS {name}_p90_s,"
        f" round(avg({secs})::numeric, 1) AS {name}_avg_s"
    )


STATS_SQL = f"""
SELECT CASE WHEN %(pooled)s::boolean THEN NULL ELSE community_id END AS community_id,
       to_char(opened_at AT TIME ZONE tz, 'YYYY-MM') AS month,
       count(*) AS incidents,
       count(acknowledged_at) AS acknowledged,
       count(resolved_at) AS resolved,
       {_timing("first_notification", "first_notified_at")},
       {_timing("acknowledgement", "acknowledged_at")},
       {_timing("resolution", "resolved_at")},
       round(avg((acknowledged_at IS NOT NULL
                  AND acknowledged_at - a <= interval '60 seconds')::int)::numeric, 3)
           AS acknowledged_within_60s,
       round(avg((acknowledged_at IS NOT NULL
                  AND acknowledged_at - a <= interval '180 seconds')::int)::numeric, 3)
           AS acknowledged_within_180s
FROM (SELECT x.*, coalesce(x.alert_at, x.opened_at) AS a, c.time_zone AS tz FROM incidents x
      JOIN communities c ON c.id = x.community_id WHERE NOT x.maintenance) i
WHERE (%(communities)s::text[] IS NULL OR community_id = ANY(%(communities)s::text[]))
  AND (%(community)s::text IS NULL OR community_id = %(community)s::text)
  AND (%(month)s::text IS NULL
       OR to_char(opened_at AT TIME ZONE tz, 'YYYY-MM') = %(month)s::text)
  AND (%(since)s::text IS NULL
       OR to_char(opened_at AT TIME ZONE tz, 'YYYY-MM') >= %(since)s::text)
  AND (%(until)s::text IS NULL
       OR to_char(opened_at AT TIME ZONE tz, 'YYYY-MM') <= %(until)s::text)
GROUP BY 1, 2
ORDER BY 2 DESC, 1
"""


async def service_stats(
    conn: Any, principal: Principal, community: str | None = None, month: str | None = None,
    *, since: str | None = None, until: str | None = None, pooled: bool = False,
) -> list[dict[str, Any]]:
    """One row per community and month the principal may see (months `since`..`until`,
    inclusive); with `pooled`, one row per month for all of them together (community_id
    None; the query itself is limited to the principal's communities)."""
    communities = None if principal.community_ids is None else sorted(principal.community_ids)
    rows = await (await conn.execute(STATS_SQL, {
        "communities": communities, "community": community, "month": month,
        "since": since, "until": until, "pooled": pooled,
    })).fetchall()
    out = []
    for row in rows:
        if pooled or principal.can_see(row["community_id"]):
            out.append({k: float(v) if hasattr(v, "is_nan") else v for k, v in row.items()})
    return out


@router.get("")
async def stats(
    request: Request, principal: Annotated[Principal, Depends(current_principal)],
    community: str | None = None, month: str | None = None, since: str | None = None,
    until: str | None = None, pooled: bool = False,
) -> dict[str, Any]:
    """Service statistics per community and month; `month`, `since` and `until` are YYYY-MM,
    local to each community; `pooled` adds the communities up per month."""
    for value in (month, since, until):
        if value is not None and not _MONTH.match(value):
            raise HTTPException(422, "month must be YYYY-MM")
    if community is not None and not principal.can_see(community):
        raise HTTPException(403, "not your community")
    async with request.app.state.pool.connection() as conn:
        rows = await service_stats(conn, principal, community, month, since=since,
                                   until=until, pooled=pooled)
    return {"rows": rows, "targets_s": [60, 180], "target_share": ACK_TARGET_SHARE}
