"""Positions on the earth: WGS-84 <-> GCJ-02, distance and direction from home, safe zones and
map links a Chinese phone opens.

Devices report WGS-84 (GNSS) or GCJ-02 (positions from Chinese location services). The platform
stores WGS-84; Chinese map apps (Amap/Gaode) expect GCJ-02, so links are converted on the way out.
GCJ-02 is the published "offset" datum of GB 20263-2006 in its widely reimplemented form
(Krasovsky ellipsoid); outside China it equals WGS-84."""

from __future__ import annotations

import math
from dataclasses import dataclass
from urllib.parse import quote

EARTH_RADIUS_M = 6_371_008.8  # mean radius (IUGG)
_A = 6_378_245.0  # Krasovsky 1940 semi-major axis, as GCJ-02 uses
_EE = 0.006_693_421_622_965_943_23  # its first eccentricity squared


@dataclass(frozen=True)
class LatLon:
    """A WGS-84 position in degrees."""

    lat: float
    lon: float


def in_china(lat: float, lon: float) -> bool:
    """The rough box where GCJ-02 applies (the usual published bounds)."""
    return 0.8293 <= lat <= 55.8271 and 72.004 <= lon <= 137.8347


def _offset(lat: float, lon: float) -> tuple[float, float]:
    x, y = lon - 105.0, lat - 35.0
    dlat = (-100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * math.sqrt(abs(x))
            + (20.0 * math.sin(6.0 * x * math.pi) + 20.0 * math.sin(2.0 * x * math.pi)) * 2 / 3
            + (20.0 * math.sin(y * math.pi) + 40.0 * math.sin(y / 3.0 * math.pi)) * 2 / 3
            + (160.0 * math.sin(y / 12.0 * math.pi) + 320 * math.sin(y * math.pi / 30.0)) * 2 / 3)
    dlon = (300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * math.sqrt(abs(x))
            + (20.0 * math.sin(6.0 * x * math.pi) + 20.0 * math.sin(2.0 * x * math.pi)) * 2 / 3
            + (20.0 * math.sin(x * math.pi) + 40.0 * math.sin(x / 3.0 * math.pi)) * 2 / 3
            + (150.0 * math.sin(x / 12.0 * math.pi) + 300.0 * math.sin(x / 30.0 * math.pi)) * 2 / 3)
    rad = lat / 180.0 * math.pi
    magic = 1 - _EE * math.sin(rad) ** 2
    sqrt_magic = math.sqrt(magic)
    dlat = (dlat * 180.0) / ((_A * (1 - _EE)) / (magic * sqrt_magic) * math.pi)
    dlon = (dlon * 180.0) / (_A / sqrt_magic * math.cos(rad) * math.pi)
    return dlat, dlon


def wgs84_to_gcj02(lat: float, lon: float) -> tuple[float, float]:
    """WGS-84 -> GCJ-02 (unchanged outside China)."""
    if not in_china(lat, lon):
        return lat, lon
    dlat, dlon = _offset(lat, lon)
    return lat + dlat, lon + dlon


def gcj02_to_wgs84(lat: float, lon: float) -> tuple[float, float]:
    """GCJ-02 -> WGS-84 by fixed-point iteration (better than 0.01 m after a few rounds)."""
    if not in_china(lat, lon):
        return lat, lon
    wlat, wlon = lat, lon
    for _ in range(30):
        glat, glon = wgs84_to_gcj02(wlat, wlon)
        dlat, dlon = glat - lat, glon - lon
        wlat, wlon = wlat - dlat, wlon - dlon
        if abs(dlat) < 1e-10 and abs(dlon) < 1e-10:
            break
    return wlat, wlon


def distance_m(a: LatLon, b: LatLon) -> float:
    """Great-circle distance (haversine), metres."""
    p1, p2 = math.radians(a.lat), math.radians(b.lat)
    dp, dl = p2 - p1, math.radians(b.lon - a.lon)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))


def bearing_deg(origin: LatLon, to: LatLon) -> float:
    """Initial bearing from `origin` to `to`, degrees clockwise from north (0-360)."""
    p1, p2 = math.radians(origin.lat), math.radians(to.lat)
    dl = math.radians(to.lon - origin.lon)
    y = math.sin(dl) * math.cos(p2)
    x = math.cos(p1) * math.sin(p2) - math.sin(p1) * math.cos(p2) * math.cos(dl)
    return (math.degrees(math.atan2(y, x)) + 360.0) % 360.0


COMPASS = ("n", "ne", "e", "se", "s", "sw", "w", "nw")


def compass(bearing: float) -> str:
    """One of eight directions (`n`, `ne`, …), the key of its words in the locale files."""
    return COMPASS[int(((bearing % 360) + 22.5) // 45) % 8]


def amap_link(p: LatLon, name: str = "") -> str:
    """A link that opens Amap (高德地图) - in the app if installed, else its web page - with a
    marker at `p`. Amap's URI API takes GCJ-02 (`coordinate=gaode`), longitude first."""
    lat, lon = wgs84_to_gcj02(p.lat, p.lon)
    label = quote(name or "位置", safe="")
    return (f"https://uri.amap.com/marker?position={lon:.6f},{lat:.6f}"
            f"&name={label}&coordinate=gaode&callnative=1")


def inside_polygon(p: LatLon, polygon: list[LatLon]) -> bool:
    """Ray casting in the local plane (zones are a few km at most, far from the poles)."""
    inside = False
    n = len(polygon)
    for i in range(n):
        a, b = polygon[i], polygon[(i + 1) % n]
        if (a.lat > p.lat) != (b.lat > p.lat):
            cross = a.lon + (p.lat - a.lat) / (b.lat - a.lat) * (b.lon - a.lon)
            if p.lon < cross:
                inside = not inside
    return inside


def distance_to_ring_m(p: LatLon, ring: list[LatLon]) -> float:
    """Distance from `p` to the nearest edge of a closed ring, metres, in a local flat plane
    around `p` (good to well under a metre over the few km a safe zone spans)."""
    k = math.cos(math.radians(p.lat))
    metres = math.pi * EARTH_RADIUS_M / 180.0

    def xy(q: LatLon) -> tuple[float, float]:
        return (q.lon - p.lon) * k * metres, (q.lat - p.lat) * metres

    best = math.inf
    for i in range(len(ring)):
        (ax, ay), (bx, by) = xy(ring[i]), xy(ring[(i + 1) % len(ring)])
        dx, dy = bx - ax, by - ay
        seg = dx * dx + dy * dy
        t = 0.0 if seg == 0 else max(0.0, min(1.0, -(ax * dx + ay * dy) / seg))
        best = min(best, math.hypot(ax + t * dx, ay + t * dy))
    return best
