"""Where the elder is, without services: WGS-84 <-> GCJ-02 against published reference points,
distance and direction from home, map links, positions in device messages (an SOS is never
refused for a broken position), and the safe-zone detector as a pure function."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from pydantic import ValidationError

from detectors.base import ElderProfile
from detectors.safezone import KIND, SafeZoneDetector, SafeZoneState
from devices.catalogue import DeviceKind
from devices.geo import (
    LatLon,
    amap_link,
    bearing_deg,
    compass,
    distance_m,
    gcj02_to_wgs84,
    inside_polygon,
    wgs84_to_gcj02,
)
from devices.records import ElderLocation
from foundation.contracts.events import CanonicalEvent
from foundation.deadletter import Rejection
from ingest.directory import DeviceInfo
from ingest.validate import to_event

# Published WGS-84 -> GCJ-02 pairs: the test tables of the eviltransform project (Shanghai,
# Shenzhen, Beijing) and of coordtransform (Tian'anmen), each reproduced by many ports.
REFERENCE = [
    ((31.1774276, 121.5272106), (31.17530398364597, 121.531541859215)),
    ((22.543847, 113.912316), (22.540796131694766, 113.9171764808363)),
    ((39.911954, 116.377817), (39.91334545536069, 116.38404722455657)),
    ((39.915, 116.404), (39.91640428150164, 116.41024449916938)),
]


@pytest.mark.parametrize(("wgs", "gcj"), REFERENCE)
def test_wgs84_to_gcj02_matches_published_points(
    wgs: tuple[float, float], gcj: tuple[float, float],
) -> None:
    lat, lon = wgs84_to_gcj02(*wgs)
    assert lat == pytest.approx(gcj[0], abs=1e-9) and lon == pytest.approx(gcj[1], abs=1e-9)
    back = gcj02_to_wgs84(*gcj)
    assert distance_m(LatLon(*back), LatLon(*wgs)) < 0.05


def test_outside_china_nothing_is_shifted() -> None:
    assert wgs84_to_gcj02(51.5007, -0.1246) == (51.5007, -0.1246)


def test_distance_and_direction_from_home() -> None:
    home = LatLon(39.9, 116.4)
    north = LatLon(39.91, 116.4)
    assert distance_m(home, north) == pytest.approx(1112, abs=2)
    assert compass(bearing_deg(home, north)) == "n"
    assert compass(bearing_deg(home, LatLon(39.9, 116.41))) == "e"
    assert compass(bearing_deg(home, LatLon(39.89, 116.39))) == "sw"


def test_amap_link_takes_gcj02_longitude_first() -> None:
    link = amap_link(LatLon(39.915, 116.404), "王奶奶")
    q = parse_qs(urlsplit(link).query)
    assert urlsplit(link).netloc == "uri.amap.com"
    assert q["position"] == ["116.410244,39.916404"]  # the published GCJ-02 of that point
    assert q["coordinate"] == ["gaode"] and q["name"] == ["王奶奶"]


def test_polygon_contains() -> None:
    square = [LatLon(39.9, 116.4), LatLon(39.9, 116.41), LatLon(39.91, 116.41),
              LatLon(39.91, 116.4)]
    assert inside_polygon(LatLon(39.905, 116.405), square)
    assert not inside_polygon(LatLon(39.915, 116.405), square)


# --- positions in device messages ----------------------------------------------------------

NOW = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
TS = int(NOW.timestamp())
WATCH = DeviceInfo("W-1", DeviceKind.SMART_WATCH.value, "E-1", "c-1", "")


def ingest(body: dict[str, Any], device: DeviceInfo = WATCH) -> CanonicalEvent | Rejection:
    return to_event(device, body, "event", NOW, "mqtt", timedelta(minutes=5), timedelta(days=7))


def test_sos_with_a_gcj02_position_is_stored_as_wgs84() -> None:
    gcj = REFERENCE[3][1]
    ev = ingest({"msg_id": "1", "ts": TS, "type": "sos", "location": {
        "lat": gcj[0], "lon": gcj[1], "accuracy_m": 8, "source": "gnss", "crs": "gcj02"}})
    assert isinstance(ev, CanonicalEvent), ev
    loc = ev.data["location"]
    assert loc["lat"] == pytest.approx(39.915, abs=1e-6)
    assert loc["lon"] == pytest.approx(116.404, abs=1e-6)
    assert loc["reported"]["crs"] == "gcj02" and loc["fix_time"] == NOW.isoformat()


def test_sos_with_a_broken_position_still_goes_through_flagged() -> None:
    ev = ingest({"msg_id": "2", "ts": TS, "type": "sos",
                 "location": {"lat": 123, "lon": 116.4, "accuracy_m": 8, "source": "gnss"}})
    assert isinstance(ev, CanonicalEvent), ev
    assert ev.type == "sos" and "location" not in ev.data
    assert "location_invalid" in ev.flags
    assert "lat" in ev.data["location_rejected"]


def test_an_old_fix_is_kept_as_last_known_position() -> None:
    ev = ingest({"msg_id": "3", "ts": TS, "type": "fall", "location": {
        "lat": 39.9, "lon": 116.4, "accuracy_m": 30, "source": "wifi", "ts": TS - 3600}})
    assert isinstance(ev, CanonicalEvent), ev
    assert ev.data["location_flags"] == ["location_stale"]


@pytest.mark.parametrize("location", [
    {"lat": 39.9, "lon": 116.4, "accuracy_m": 50_000, "source": "cell"},  # useless accuracy
    {"lat": 39.9, "lon": 181, "accuracy_m": 10, "source": "gnss"},
    {"lat": 39.9, "lon": 116.4, "accuracy_m": 10, "source": "bluetooth"},
    {"lat": 39.9, "lon": 116.4, "accuracy_m": 10, "source": "gnss", "crs": "bd09"},
])
def test_a_bad_position_report_is_rejected_with_the_field(location: dict[str, Any]) -> None:
    rej = ingest({"msg_id": "4", "ts": TS, "type": "location", "location": location})
    assert isinstance(rej, Rejection)
    assert "location." in rej.detail


def test_only_watches_and_canes_report_positions() -> None:
    button = DeviceInfo("B-1", DeviceKind.SOS_BUTTON.value, "E-1", "c-1", "")
    rej = ingest({"msg_id": "5", "ts": TS, "type": "location", "location": {
        "lat": 39.9, "lon": 116.4, "accuracy_m": 10, "source": "gnss"}}, button)
    assert isinstance(rej, Rejection) and rej.reason == "type_not_allowed"


# --- home and safe zone in the registry ----------------------------------------------------

def test_a_circle_zone_needs_a_home_and_polygons_three_points() -> None:
    with pytest.raises(ValidationError, match="set home too"):
        ElderLocation.model_validate({"safe_zone": {"radius_m": 500}})
    with pytest.raises(ValidationError, match="three"):
        ElderLocation.model_validate({"safe_zone": {"shape": "polygon",
                                                    "polygon": [[39.9, 116.4]]}})
    with pytest.raises(ValidationError, match="time zone"):
        ElderLocation.model_validate({"home": {"lat": 39.9, "lon": 116.4},
                                      "safe_zone": {"radius_m": 500, "timezone": "Mars/Base"}})


def test_a_home_copied_from_a_chinese_map_is_stored_as_wgs84() -> None:
    gcj = REFERENCE[3][1]
    home, _ = ElderLocation.model_validate(
        {"home": {"lat": gcj[0], "lon": gcj[1], "crs": "gcj02"}}).stored()
    assert home is not None
    assert distance_m(LatLon(39.915, 116.404), LatLon(home["lat"], home["lon"])) < 0.05


# --- the safe-zone detector -----------------------------------------------------------------

HOME = {"lat": 39.9, "lon": 116.4, "radius_m": 100}
ZONE = {"shape": "circle", "radius_m": 500, "polygon": [], "dwell_min": 10, "hours": [],
        "timezone": "Asia/Shanghai"}
PROFILE = ElderProfile("E-1", "c-1", home=HOME, safe_zone=ZONE)
DETECTOR = SafeZoneDetector()


def fix(minutes: float, north_m: float, accuracy_m: float = 20) -> CanonicalEvent:
    t = NOW + timedelta(minutes=minutes)
    return CanonicalEvent(
        event_id=f"W-1/{minutes}", elder_id="E-1", community_id="c-1", device_id="W-1",
        device_kind="smart_watch", type="location", event_time=t, received_at=t,
        data={"location": {"lat": 39.9 + north_m / 111_195, "lon": 116.4,
                           "accuracy_m": accuracy_m, "source": "gnss"}})


def run(events: list[CanonicalEvent], profile: ElderProfile = PROFILE,
        timer_at: float | None = None) -> tuple[SafeZoneState, list[str]]:
    state, kinds = DETECTOR.initial(), []
    for ev in events:
        v = DETECTOR.on_event(state, ev, profile)
        state, kinds = v.state, kinds + [a.kind for a in v.alerts]
    if timer_at is not None:
        v = DETECTOR.on_timer(state, NOW + timedelta(minutes=timer_at), profile)
        state, kinds = v.state, kinds + [a.kind for a in v.alerts]
    return state, kinds


def test_outside_for_the_dwell_time_raises_one_high_alert() -> None:
    _, kinds = run([fix(0, 2000), fix(5, 2100), fix(11, 2200), fix(15, 2300)])
    assert kinds == [KIND]
    v = DETECTOR.on_event(SafeZoneState(), fix(0, 2000), PROFILE)
    assert v.alerts == []


def test_the_timer_raises_it_when_the_watch_goes_quiet_outside() -> None:
    _, kinds = run([fix(0, 2000)], timer_at=10.5)
    assert kinds == [KIND]


def test_a_short_trip_out_and_back_raises_nothing_and_rearms() -> None:
    _, kinds = run([fix(0, 2000), fix(5, 50), fix(12, 2000), fix(16, 2000)])
    assert kinds == []
    _, kinds = run([fix(0, 2000), fix(11, 2000), fix(12, 50), fix(13, 2000), fix(24, 2000)])
    assert kinds == [KIND, KIND]


def test_a_poor_fix_near_the_edge_never_counts_as_outside() -> None:
    _, kinds = run([fix(0, 700, accuracy_m=800), fix(30, 700, accuracy_m=800)])
    assert kinds == []


def test_outside_the_zone_hours_nothing_is_watched() -> None:
    night_only = {**ZONE, "hours": [["20:00", "07:00"]]}  # 08:00 UTC is 16:00 in Beijing
    _, kinds = run([fix(0, 2000), fix(30, 2000)],
                   ElderProfile("E-1", "c-1", home=HOME, safe_zone=night_only))
    assert kinds == []


def test_a_polygon_zone() -> None:
    ring = [[39.899, 116.399], [39.899, 116.401], [39.901, 116.401], [39.901, 116.399]]
    profile = ElderProfile("E-1", "c-1", safe_zone={**ZONE, "shape": "polygon",
                                                    "polygon": ring, "radius_m": None})
    assert run([fix(0, 0), fix(30, 0)], profile)[1] == []
    assert run([fix(0, 2000), fix(30, 2000)], profile)[1] == [KIND]


# --- words for families and staff -----------------------------------------------------------

def test_at_home_is_said_plainly() -> None:
    from dispatcher.whereabouts import describe, locate

    w = locate({"lat": 39.9003, "lon": 116.4, "accuracy_m": 15}, HOME)
    assert w is not None and w.at_home
    assert describe(w, "zh-Hans") == "在家"
    assert describe(w, "en") == "at home"


def test_away_from_home_gives_distance_direction_and_a_map_link() -> None:
    from dispatcher.whereabouts import describe, locate

    w = locate({"lat": 39.9 + 1200 / 111_195, "lon": 116.4 + 0.011, "accuracy_m": 12,
                "fix_time": NOW.isoformat()}, HOME, "王奶奶")
    assert w is not None and w.at_home is False and w.direction == "ne"
    zh = describe(w, "zh-Hans", NOW)
    assert zh.startswith("距家约1.5公里，东北方向") and "https://uri.amap.com/marker?" in zh
    assert describe(w, "en", NOW).startswith("about 1.5 km north-east of home")
    later = describe(w, "zh-Hans", NOW + timedelta(minutes=25))
    assert "最后已知位置（25分钟前）" in later


def test_without_a_position_staff_go_to_the_address() -> None:
    from dispatcher.whereabouts import describe, locate

    assert describe(locate(None, HOME), "zh-Hans") == "位置未知（按家庭住址前往）"
    no_home = locate({"lat": 39.95, "lon": 116.45, "accuracy_m": 30}, None)
    assert no_home is not None and no_home.at_home is None
    assert describe(no_home, "zh-Hans").startswith("地图：https://uri.amap.com/")
