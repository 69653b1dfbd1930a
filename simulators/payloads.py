"""What a virtual device publishes: one builder per message type, the same shape for every kind.

Bodies are plain dicts (JSON-ready) that follow `devices.schemas`; `ts` is the simulated time in
epoch seconds, `msg_id` is unique per device (a per-run nonce plus a counter)."""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Iterator
from typing import Any

from devices.catalogue import CATALOGUE, DeviceKind
from simulators import accel

Body = dict[str, Any]


class MessageIds:
    """Unique message ids for one device: a per-run nonce, so reruns are never de-duplicated."""

    def __init__(self, nonce: str | None = None) -> None:
        self.nonce = nonce or secrets.token_hex(3)
        self._seq: Iterator[int] = itertools.count(1)

    def next(self) -> str:
        return f"{self.nonce}-{next(self._seq):x}"


def body(msg_type: str, ts: float, msg_id: str, **fields: Any) -> Body:
    return {"msg_id": msg_id, "ts": round(ts, 3), "type": msg_type, **fields}


def heartbeat(battery: int, rssi: int = -60, firmware: str = "sim-1.0") -> Body:
    return {"type": "heartbeat", "battery": max(0, min(100, battery)), "rssi": rssi,
            "firmware": firmware}


def sos() -> Body:
    return {"type": "sos"}


def ok() -> Body:
    return {"type": "ok"}


def tamper(state: bool = True) -> Body:
    """The casing opened (true) or closed again (false)."""
    return {"type": "tamper", "state": state}


def water_leak(state: bool = True) -> Body:
    """A leak sensor wet (true) or dry again (false)."""
    return {"type": "water_leak", "state": state}


def fall(confidence: float = 0.9) -> Body:
    return {"type": "fall", "confidence": confidence}


def steps(count: int) -> Body:
    return {"type": "steps", "steps": count}


def accel_window(samples: list[tuple[float, float, float]], rate_hz: float) -> Body:
    return {"type": "accel", "rate_hz": rate_hz, "samples": [list(s) for s in samples]}


def location(lat: float, lon: float, accuracy_m: float = 10.0, source: str = "gnss") -> Body:
    """A position report; add `position(...)` to an sos or fall body for a located press."""
    return {"type": "location", "location": position(lat, lon, accuracy_m, source)}


def position(lat: float, lon: float, accuracy_m: float = 10.0, source: str = "gnss") -> Body:
    return {"lat": round(lat, 7), "lon": round(lon, 7), "accuracy_m": accuracy_m,
            "source": source}


def heart_rate(bpm: float) -> Body:
    return {"type": "hr", "bpm": round(bpm, 1)}


def spo2(percent: float) -> Body:
    return {"type": "spo2", "percent": round(percent, 1)}


def alarm(kind: str, state: bool = True, temperature_c: float | None = None) -> Body:
    out: Body = {"type": kind, "state": state}
    if temperature_c is not None:
        out["temperature_c"] = round(temperature_c, 1)
    return out


def blood_pressure(systolic: float, diastolic: float, pulse: float | None = None) -> Body:
    out: Body = {"type": "bp", "systolic": round(systolic), "diastolic": round(diastolic)}
    if pulse is not None:
        out["pulse"] = round(pulse)
    return out


def glucose(value: float, unit: str = "mmol/L") -> Body:
    return {"type": "glucose", "value": round(value, 1), "unit": unit}


def motion() -> Body:
    return {"type": "motion"}


def door(is_open: bool) -> Body:
    return {"type": "door", "open": is_open}


def occupancy(occupied: bool) -> Body:
    return {"type": "occupancy", "occupied": occupied}


def flush() -> Body:
    return {"type": "flush"}


def power(watts: float) -> Body:
    return {"type": "power", "watts": round(max(0.0, watts), 1)}


def water(flow_l_min: float) -> Body:
    return {"type": "water", "flow": round(max(0.0, flow_l_min), 2)}


def contact(is_open: bool) -> Body:
    return {"type": "contact", "open": is_open}


def examples(kind: DeviceKind) -> list[Body]:
    """One example of every message type the kind may send (payload without msg_id and ts)."""
    walk = accel.walking(accel.DEFAULT_RATE_HZ, 2.0, seed=1)
    by_type: dict[str, Body] = {
        "heartbeat": heartbeat(87), "sos": sos(), "ok": ok(), "fall": fall(),
        "steps": steps(42), "accel": accel_window(walk, accel.DEFAULT_RATE_HZ),
        "location": location(39.9583, 116.4172, 12.0),
        "hr": heart_rate(72), "spo2": spo2(97), "smoke": alarm("smoke"),
        "gas": alarm("gas"), "heat": alarm("heat", temperature_c=68),
        "bp": blood_pressure(132, 84, 70), "glucose": glucose(6.1), "motion": motion(),
        "door": door(True), "tamper": tamper(), "water_leak": water_leak(),
        "occupancy": occupancy(True), "flush": flush(),
        "power": power(1800), "water": water(6.5), "contact": contact(True),
    }
    return [by_type[t] for t in sorted(CATALOGUE[kind].message_types)]
