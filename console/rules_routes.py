"""Each community's emergency rules (dispatcher/ladder.py `Rules`) as data: read by its staff,
changed by district admins, previewed before saving. A preview validates the rules and shows,
for every kind, who each rung would reach right now (the staff on shift, in the community's
own time zone); nothing is stored and nobody is contacted."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request
from psycopg.types.json import Jsonb
from pydantic import ValidationError

from dispatcher import roster
from dispatcher.incidents import People, rules_for
from dispatcher.ladder import DEFAULT_LADDERS, Rules, ladder_for, parse_rules
from foundation import audit
from foundation.contracts.alerts import Severity
from foundation.security import CurrentPrincipal, Principal, require_district_admin

router = APIRouter(prefix="/api/v1/communities/{community_id}/rules", tags=["rules"])

ADMINS_ONLY = "only a district admin changes a community's emergency rules"
# The kinds a preview shows: those with a ladder of their own, then one per severity.
PREVIEW_KINDS: list[tuple[str, Severity, bool]] = [
    *[(k, Severity.CRITICAL, False) for k in DEFAULT_LADDERS if k != "maintenance"],
    ("vital", Severity.HIGH, False), ("inactivity", Severity.HIGH, False),
    ("low_battery", Severity.LOW, True),
]


async def _community(conn: Any, principal: Principal, community_id: str) -> None:
    if not principal.can_see(community_id):
        raise HTTPException(404, "no such community")
    row = await (await conn.execute(
        "SELECT 1 FROM communities WHERE id = %s", (community_id,))).fetchone()
    if row is None:
        raise HTTPException(404, "no such community")


def _validated(body: Any) -> Rules:
    try:
        return parse_rules(body)
    except ValidationError as exc:
        raise HTTPException(422, [{"loc": e["loc"], "msg": e["msg"]} for e in exc.errors()]) \
            from None


@router.get("")
async def get_rules(
    community_id: str, request: Request, principal: CurrentPrincipal,
) -> dict[str, Any]:
    """The community's rules (the defaults when none are stored)."""
    async with request.app.state.pool.connection() as conn:
        await _community(conn, principal, community_id)
        stored = await (await conn.execute(
            "SELECT updated_at, updated_by FROM community_rules WHERE community_id = %s",
            (community_id,))).fetchone()
        rules = await rules_for(conn, community_id)
    return {"rules": rules.model_dump(mode="json"), "stored": stored is not None,
            "updated_at": stored["updated_at"] if stored else None,
            "updated_by": stored["updated_by"] if stored else None}


@router.post("/preview")
async def preview_rules(
    community_id: str, request: Request, principal: CurrentPrincipal,
) -> dict[str, Any]:
    """Validate submitted rules and show who each kind's ladder reaches now; stores nothing."""
    rules = _validated(await request.json())
    async with request.app.state.pool.connection() as conn:
        await _community(conn, principal, community_id)
        staff, level = await roster.on_duty(conn, community_id)
        line = await (await conn.execute(
            "SELECT emergency_line FROM communities WHERE id = %s", (community_id,))).fetchone()
    example = [{"priority": n, "name": f"contact:{n}", "phone": "+8613800000000",
                "can_sms": True, "language": "zh-Hans", "channels": ["voice", "sms"]}
               for n in (1, 2, 3)]
    people = People(example, staff, line["emergency_line"] if line else "",
                    elder={"name": "elder", "phone": "+8613800000001"},
                    lead=roster.duty_lead(staff))
    ladders = {}
    for kind, severity, maintenance in PREVIEW_KINDS:
        policy = ladder_for(rules, kind, severity, maintenance)
        ladders[kind] = {"rounds": policy.rounds, "round_wait_s": policy.round_wait_s, "rungs": [
            {"action": r.action, "target": r.target, "wait_s": r.wait_s,
             "reaches": [p["name"] for p in people.reached_by(r)]} for r in policy.rungs]}
    return {"valid": True, "staff_level": level, "on_shift": [s["name"] for s in staff],
            "grouping": [g.model_dump() for g in rules.grouping], "ladders": ladders}


@router.put("")
async def put_rules(
    community_id: str, request: Request, principal: CurrentPrincipal,
) -> dict[str, Any]:
    """Store the community's rules (422 with the reasons if they do not validate). Incidents
    already open keep the ladder they were opened with."""
    require_district_admin(principal, ADMINS_ONLY)
    rules = _validated(await request.json())
    async with request.app.state.pool.connection() as conn, conn.transaction():
        await _community(conn, principal, community_id)
        await conn.execute(
            "INSERT INTO community_rules (community_id, rules, updated_by) VALUES (%s, %s, %s)"
            " ON CONFLICT (community_id) DO UPDATE SET rules = EXCLUDED.rules,"
            " updated_at = now(), updated_by = EXCLUDED.updated_by",
            (community_id, Jsonb(rules.model_dump(mode="json")), principal.staff_id))
        await audit.record(conn, principal, "update_rules", "community", community_id,
                           community_id, audit.client_of(request))
    return {"rules": rules.model_dump(mode="json"), "stored": True}
