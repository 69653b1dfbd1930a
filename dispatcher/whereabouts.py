"""Where the elder is, in words a family member or a duty worker can act on: "在家", or the
distance and direction from home with a map link a Chinese phone opens (Amap, GCJ-02).

Input is the canonical position (WGS-84, `devices/geo.py`) recorded on the incident and the
home from the registry; both may be missing."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from devices.geo import LatLon, amap_link, bearing_deg, compass, distance_m
from foundation.i18n import t


@dataclass(frozen=True)
class Whereabouts:
    """A position relative to home: what messages say and what the console draws."""

    lat: float
    lon: float
    accuracy_m: float
    fix_time: datetime | None
    at_home: bool | None  # None: no home on record
    distance_m: float | None
    direction: str | None  # compass key: n, ne, …
    map_link: str

    def as_dict(self) -> dict[str, Any]:
        return {"lat": self.lat, "lon": self.lon, "accuracy_m": self.accuracy_m,
                "fix_time": self.fix_time.isoformat() if self.fix_time else None,
                "at_home": self.at_home, "distance_m": self.distance_m,
                "direction": self.direction, "map_link": self.map_link}


def locate(location: dict[str, Any] | None, home: dict[str, Any] | None,
           label: str = "") -> Whereabouts | None:
    """The position relative to home, or None without a usable position."""
    if not location or "lat" not in location or "lon" not in location:
        return None
    p = LatLon(float(location["lat"]), float(location["lon"]))
    accuracy = float(location.get("accuracy_m") or 0)
    fix = location.get("fix_time")
    fix_time = datetime.fromisoformat(fix) if isinstance(fix, str) else None
    at_home = distance = direction = None
    if home and "lat" in home and "lon" in home:
        h = LatLon(float(home["lat"]), float(home["lon"]))
        distance = distance_m(h, p)
        # Within the home's radius, or a fix too coarse to tell it from home: "at home" is
        # what staff should assume, with the address they already have.
        at_home = distance <= float(home.get("radius_m") or 100) + min(accuracy, 100)
        direction = None if at_home else compass(bearing_deg(h, p))
    return Whereabouts(p.lat, p.lon, accuracy, fix_time, at_home, distance, direction,
                       amap_link(p, label))


def _distance(metres: float, lang: str) -> str:
    if metres < 1000:
        return t("unit.m", lang, n=int(round(metres, -1)) or 10)
    return t("unit.km", lang, n=f"{metres / 1000:.1f}")


def describe(w: Whereabouts | None, lang: str, now: datetime | None = None,
             link: bool = True) -> str:
    """One phrase for an SMS or a call: "在家", "距家约1.2公里，东北方向，地图：…" (without
    the map link when `link` is false: a call cannot read it out, a page shows a button), or
    that the position is unknown."""
    if w is None:
        return t("where.unknown", lang)
    if w.at_home:
        return t("where.home", lang)
    parts = []
    if w.distance_m is not None and w.direction is not None:
        parts.append(t("where.away", lang, distance=_distance(w.distance_m, lang),
                       direction=t(f"dir.{w.direction}", lang)))
    if w.accuracy_m >= 100:
        parts.append(t("where.accuracy", lang, accuracy=_distance(w.accuracy_m, lang)))
    if now is not None and w.fix_time is not None and (now - w.fix_time).total_seconds() > 600:
        parts.append(t("where.stale", lang, minutes=int((now - w.fix_time).total_seconds() // 60)))
    if link or not parts:
        parts.append(t("where.map", lang, link=w.map_link))
    return ("，" if lang == "zh-Hans" else ", ").join(parts)


# A press without a position of its own is placed by the newest fix this long before it.
RECENT_FIX = "5 minutes"
# Readings that carry a position fix.
FIX_TYPES = ["location", "sos", "fall"]


def _location_in(alert: dict[str, Any]) -> dict[str, Any] | None:
    for item in alert.get("evidence") or []:
        if not isinstance(item, dict):
            continue
        loc = item.get("location") or (item.get("data") or {}).get("location")
        if isinstance(loc, dict) and "lat" in loc:
            return loc
    return None


# The elder's newest position fix of the `RECENT_FIX` before the press of incident `i` (a
# subquery for the statements below, with `place_params`).
_RECENT_FIX_OF_I = """(
    SELECT r.data -> 'location' FROM readings r
    WHERE r.elder_id = i.elder_id AND r.type = ANY(%(types)s)
      AND r.event_time BETWEEN i.event_time - %(recent)s::interval AND i.event_time
      AND r.data ? 'location' ORDER BY r.event_time DESC LIMIT 1)"""


def position_statement(incident_id: str, alert: dict[str, Any]
                       ) -> tuple[str, dict[str, Any]]:
    """The statement recording on the incident where the elder was, once: the alert's own
    position, else the newest fix of the `RECENT_FIX` before the press (none: the position
    stays unknown). It answers nothing, so it can be sent with other statements."""
    found = _location_in(alert)
    if found is not None:
        return ("UPDATE incidents SET location = %(found)s"
                " WHERE id = %(incident)s AND location IS NULL",
                {"found": Jsonb(found), "incident": incident_id})
    return ("UPDATE incidents SET location = f.loc FROM ("
            f" SELECT i.id, {_RECENT_FIX_OF_I} AS loc FROM incidents i"
            " WHERE i.id = %(incident)s) f"
            " WHERE incidents.id = f.id AND incidents.location IS NULL"
            " AND jsonb_typeof(f.loc) = 'object'", place_params(incident_id))


async def remember_position(conn: AsyncConnection[Any], incident_id: str,
                            alert: dict[str, Any]) -> None:
    """`position_statement`, executed."""
    await conn.execute(*position_statement(incident_id, alert))


# One read for everything a message says about place: the position recorded on the incident,
# the elder's home, the incident's alerts (their positions, the device pressed first) and, for
# an incident without a position of its own, the newest fix of the `RECENT_FIX` before it.
PLACE = f"""
SELECT i.location, e.home,
       coalesce((SELECT jsonb_agg(a.alert ORDER BY a.received_at) FROM incident_alerts a
                 WHERE a.incident_id = i.id), '[]'::jsonb) AS alerts,
       CASE WHEN i.location IS NULL THEN {_RECENT_FIX_OF_I} END AS recent
FROM incidents i JOIN elders e ON e.id = i.elder_id WHERE i.id = %(incident)s
"""


def place_params(incident_id: object) -> dict[str, Any]:
    """The parameters of `PLACE` and of `position_statement`'s fix for one incident."""
    return {"incident": str(incident_id), "types": FIX_TYPES, "recent": RECENT_FIX}


# Devices that go out with the elder; every other kind is installed at home, so a press from it
# without a position is a press at home.
CARRIED = frozenset({"smart_watch", "smart_cane"})


def _device_kind(alert: dict[str, Any]) -> str | None:
    for item in alert.get("evidence") or []:
        if isinstance(item, dict) and item.get("device_kind"):
            return str(item["device_kind"])
    return None


def placed(row: dict[str, Any] | None, label: str = ""
           ) -> tuple[Whereabouts | None, str | None]:
    """(where the elder was at the press relative to home, the kind of device pressed first)
    from a `PLACE` row. The position is the one recorded on the incident, else the one its
    alerts carried, else the newest fix of the 5 minutes before the press."""
    if row is None:
        return None, None
    alerts: list[dict[str, Any]] = [a for a in row["alerts"] if isinstance(a, dict)]
    loc = row["location"] if isinstance(row["location"], dict) else next(
        (found for a in alerts if (found := _location_in(a)) is not None), None)
    if loc is None and isinstance(row["recent"], dict):
        loc = row["recent"]
    home = row["home"] if isinstance(row["home"], dict) else None
    return locate(loc, home, label), (_device_kind(alerts[0]) if alerts else None)


async def _place(conn: AsyncConnection[Any], incident_id: str, label: str
                 ) -> tuple[Whereabouts | None, str | None]:
    row = await (await conn.execute(PLACE, place_params(incident_id))).fetchone()
    return placed(row, label)


async def incident_whereabouts(conn: AsyncConnection[Any], incident_id: str, label: str = ""
                               ) -> Whereabouts | None:
    """`locate` for an incident: its position relative to the elder's registered home."""
    return (await _place(conn, incident_id, label))[0]


def place_words(row: dict[str, Any] | None, lang: str, label: str = "",
                now: datetime | None = None) -> tuple[str, str]:
    """The incident's "where" for a message, written (with the map link) and spoken (without),
    from its `PLACE` row: the position relative to home when there is one; "在家" for a device
    installed at home; else that the position is unknown."""
    w, pressed_on = placed(row, label)
    if w is None and pressed_on not in CARRIED:
        home = t("where.home", lang)
        return home, home
    return describe(w, lang, now, link=True), describe(w, lang, now, link=False)


async def recent_positions(conn: AsyncConnection[Any], elder_id: str, home: dict[str, Any] | None,
                           hours: int = 24, limit: int = 200) -> list[dict[str, Any]]:
    """The elder's positions of the last `hours` (newest first), each placed relative to home
    in metres (`east_m`, `north_m`) for a plot that needs no map tiles, with its map link."""
    rows = await (await conn.execute(
        "SELECT event_time, type, data -> 'location' AS loc FROM readings WHERE elder_id = %s"
        " AND type = ANY(%s) AND event_time > now() - make_interval(hours => %s)"
        " AND data ? 'location' ORDER BY event_time DESC LIMIT %s",
        (elder_id, FIX_TYPES, hours, limit))).fetchall()
    out = []
    for row in rows:
        w = locate(row["loc"] if isinstance(row["loc"], dict) else None, home)
        if w is None:
            continue
        item = {"at": row["event_time"].isoformat(), "type": row["type"], **w.as_dict()}
        if home and "lat" in home:
            origin = LatLon(float(home["lat"]), float(home["lon"]))
            item["north_m"] = round(distance_m(origin, LatLon(w.lat, origin.lon))
                                    * (1 if w.lat >= origin.lat else -1), 1)
            item["east_m"] = round(distance_m(origin, LatLon(origin.lat, w.lon))
                                   * (1 if w.lon >= origin.lon else -1), 1)
        out.append(item)
    return out
