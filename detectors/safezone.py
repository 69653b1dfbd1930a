"""Safe zones (电子围栏): an elder whose watch or cane reports a position outside their zone,
during the zone's hours, for `dwell_min` minutes raises `left_safe_zone` (high), once; a
position back inside re-arms it.

Only fixes that are surely outside count: the distance beyond the zone must exceed the fix's
own accuracy, so a poor cell-tower fix near the edge never calls the family. Stale fixes (the
device's last known position) are ignored."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel

from detectors.base import ElderProfile, Verdict
from devices.geo import LatLon, distance_m, distance_to_ring_m, inside_polygon
from foundation.contracts.alerts import Alert, Severity, alert_id
from foundation.contracts.events import CanonicalEvent

KIND = "left_safe_zone"


class SafeZoneState(BaseModel):
    outside_since: datetime | None = None
    alerted: bool = False
    last: dict[str, Any] | None = None  # the newest position outside, as evidence
    last_device: str | None = None


def position(event: CanonicalEvent) -> dict[str, Any] | None:
    """The event's fresh position, if it has one."""
    loc = event.data.get("location")
    if not isinstance(loc, dict) or "location_stale" in event.data.get("location_flags", []):
        return None
    return loc


def watched(zone: dict[str, Any], at: datetime) -> bool:
    """Whether the zone's hours include `at` (all day when it has none)."""
    hours = zone.get("hours") or []
    if not hours:
        return True
    local = at.astimezone(ZoneInfo(zone.get("timezone") or "Asia/Shanghai")).time()
    for start, end in hours:
        a, b = time.fromisoformat(start), time.fromisoformat(end)
        if (a <= local < b) if a <= b else (local >= a or local < b):
            return True
    return False


def outside(zone: dict[str, Any], home: dict[str, Any] | None, loc: dict[str, Any]) -> bool | None:
    """True when surely outside, False when inside, None when the fix cannot tell."""
    p = LatLon(float(loc["lat"]), float(loc["lon"]))
    accuracy = float(loc.get("accuracy_m", 0))
    if zone.get("shape") == "polygon":
        ring = [LatLon(float(a), float(b)) for a, b in zone.get("polygon", [])]
        if inside_polygon(p, ring):
            return False
        return True if distance_to_ring_m(p, ring) > accuracy else None
    if home is None or zone.get("radius_m") is None:
        return None
    d = distance_m(LatLon(float(home["lat"]), float(home["lon"])), p)
    radius = float(zone["radius_m"])
    if d <= radius:
        return False
    return True if d - radius > accuracy else None


class SafeZoneDetector:
    name = "safe_zone"

    def initial(self) -> SafeZoneState:
        return SafeZoneState()

    def on_event(self, state: SafeZoneState, event: CanonicalEvent, profile: ElderProfile
                 ) -> Verdict[SafeZoneState]:
        zone = profile.safe_zone
        loc = position(event)
        if zone is None or loc is None:
            return Verdict(state)
        where = outside(zone, profile.home, loc)
        if where is None:
            return Verdict(state)
        if not where or not watched(zone, event.event_time):
            # Back inside (or the zone is off now): re-armed.
            fresh = SafeZoneState()
            return Verdict(state if state == fresh else fresh)
        since = state.outside_since or event.event_time
        new = state.model_copy(update={"outside_since": since, "last": loc,
                                       "last_device": event.device_id})
        return self._judge(new, event.event_time, event.elder_id, profile)

    def on_timer(self, state: SafeZoneState, now: datetime, profile: ElderProfile
                 ) -> Verdict[SafeZoneState]:
        if state.outside_since is None or state.alerted or profile.safe_zone is None:
            return Verdict(state)
        return self._judge(state, now, profile.elder_id, profile)

    def _judge(self, state: SafeZoneState, now: datetime, elder_id: str,
               profile: ElderProfile) -> Verdict[SafeZoneState]:
        zone = profile.safe_zone or {}
        dwell = timedelta(minutes=float(zone.get("dwell_min", 10)))
        if state.alerted or state.outside_since is None or now - state.outside_since < dwell:
            return Verdict(state)
        assert state.outside_since is not None
        alert = Alert(
            alert_id=alert_id(KIND, elder_id, state.outside_since.isoformat()),
            elder_id=elder_id, community_id=profile.community_id, kind=KIND,
            severity=Severity.HIGH, event_time=now, detected_at=now,
            device_id=state.last_device,
            evidence=[{"location": state.last, "outside_since": state.outside_since.isoformat(),
                       "dwell_min": zone.get("dwell_min", 10)}],
        )
        return Verdict(state.model_copy(update={"alerted": True}), [alert])
