"""What a family or staff member would have told the registry about a simulated elder: the
daily check-in deadline, and the days the elder is away (so silence then is expected)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import psycopg

from simulators.clock import parse_duration
from simulators.population import SimElder
from simulators.scenario import Scenario


def _has(conn: psycopg.Connection[tuple[object, ...]], table: str, column: str) -> bool:
    row = conn.execute(
        "SELECT 1 FROM information_schema.columns WHERE table_name = %s AND column_name = %s",
        (table, column)).fetchone()
    return row is not None


def register_plans(database_url: str, sc: Scenario, sims: list[SimElder], start: float) -> None:
    """Write check-in deadlines and usual wake-up times (`elders.detector_thresholds`) and away
    periods (`elder_away_periods`) where the registry has them."""
    by_key = {s.key: s for s in sims}
    with psycopg.connect(database_url) as conn, conn.transaction():
        if _has(conn, "elders", "detector_thresholds"):
            for s in sims:
                known: dict[str, float] = {}
                if s.habits.checkin_s is not None:
                    known["checkin_deadline_h"] = s.habits.checkin_s / 3600
                if s.habits.usual_wake_s is not None:
                    known["wake_h"] = s.habits.usual_wake_s / 3600
                if known:
                    conn.execute(
                        "UPDATE elders SET detector_thresholds = detector_thresholds || %s::jsonb"
                        " WHERE id = %s", (json.dumps(known), s.elder.id))
        if _has(conn, "elder_away_periods", "starts_at"):
            for inj in sc.inject:
                if inj.event != "away":
                    continue
                frm = start + inj.at_s
                to = frm + parse_duration(inj.lasts) if inj.lasts is not None else None
                conn.execute(
                    "INSERT INTO elder_away_periods (elder_id, starts_at, ends_at, reason)"
                    " VALUES (%s, %s, %s, %s)",
                    (by_key[inj.elder].elder.id, datetime.fromtimestamp(frm, UTC),
                     datetime.fromtimestamp(to, UTC) if to else None, "simulated: away"))
