"""Device health: offline (no message for two heartbeat intervals, or an MQTT last will not
followed by a reconnect), low battery, tamper. Maintenance alerts for staff only.

When every device of a home falls silent together, that is one gateway-offline alert (the home's
connection), not one alert per device; a device is called offline on its own only once another
device of the home has been heard after its deadline."""

from __future__ import annotations

import functools
from datetime import datetime, timedelta

from detectors.base import ElderProfile, State, Verdict
from detectors.config import DetectorConfig
from devices.catalogue import CATALOGUE, DeviceKind
from foundation.contracts.alerts import Alert, Severity, alert_id
from foundation.contracts.events import CanonicalEvent


class DeviceSeen(State):
    kind: str = ""
    room: str | None = None
    interval_s: int = 3600
    last: datetime
    heard: bool = True                 # False: registered, never heard (last = watch start)
    will_at: datetime | None = None
    offline_alerted_for: datetime | None = None
    battery_low: bool = False


class HealthState(State):
    community_id: str = ""
    first_seen: datetime | None = None
    devices: dict[str, DeviceSeen] = {}
    gateway_alerted_for: datetime | None = None
    due: datetime | None = None  # nothing can fire before this (events only push it later)


class DeviceHealthDetector:
    name = "health"

    def __init__(self, config: DetectorConfig) -> None:
        self.c = config

    def initial(self) -> HealthState:
        return HealthState()

    def on_event(
        self, state: HealthState, event: CanonicalEvent, profile: ElderProfile,
    ) -> Verdict[HealthState]:
        t = event.event_time
        data = event.data
        dev = state.devices.get(event.device_id)
        new = dev is None or event.type == "offline"
        if dev is None:
            dev = DeviceSeen(kind=event.device_kind, room=event.room,
                             interval_s=_interval(event.device_id, event.device_kind, profile),
                             last=t)
        alerts: list[Alert] = []
        update: dict[str, object] = {}
        if event.type == "offline":
            update["will_at"] = t
        else:
            if not dev.heard:
                update["heard"] = True
            if not dev.kind:
                update.update(kind=event.device_kind, room=event.room)
            if t > dev.last or not dev.heard:
                update["last"] = t
            if dev.will_at is not None and t >= dev.will_at:
                update["will_at"] = None
        battery = data.get("battery")
        if isinstance(battery, int | float):
            if battery < self.c.battery_low and not dev.battery_low:
                update["battery_low"] = True
                alerts.append(self._alert(event, "low_battery", Severity.LOW,
                                          event.event_id, battery=battery))
            elif battery > self.c.battery_ok and dev.battery_low:
                update["battery_low"] = False
        tampered = (event.type == "tamper" and data.get("state") is not False) \
            or data.get("tamper") is True
        if tampered:  # "put back" (state false) is no alert
            alerts.append(self._alert(event, "tamper", Severity.MEDIUM, event.event_id))
        if update:
            dev = dev.model_copy(update=update)
        elif not new and state.community_id == event.community_id \
                and state.first_seen is not None:
            return Verdict(state, alerts)  # an event older than the device's last: no news
        devices = dict(state.devices)
        devices[event.device_id] = dev
        changes: dict[str, object] = {"devices": devices}
        if state.community_id != event.community_id:
            changes["community_id"] = event.community_id
        if state.first_seen is None:
            changes["first_seen"] = t
        if new and state.due is not None:
            changes["due"] = None
        return Verdict(state.model_copy(update=changes), alerts)

    def _alert(self, event: CanonicalEvent, kind: str, severity: Severity, key: str,
               **evidence: object) -> Alert:
        return Alert(
            alert_id=alert_id(kind, key), elder_id=event.elder_id,
            community_id=event.community_id, kind=kind, severity=severity,
            event_time=event.event_time, detected_at=event.received_at,
            device_id=event.device_id, room=event.room, maintenance=True,
            evidence=[{"device_kind": event.device_kind, **evidence}],
        )

    def _deadline(self, dev: DeviceSeen, profile: ElderProfile) -> datetime:
        base = dev.last if profile.rearmed_at is None else max(dev.last, profile.rearmed_at)
        deadline = base + timedelta(seconds=self.c.offline_intervals * dev.interval_s)
        if dev.will_at is not None:
            deadline = min(deadline, max(dev.will_at, profile.rearmed_at or dev.will_at)
                           + timedelta(seconds=self.c.will_grace_s))
        return deadline

    def _home_deadline(self, devices: dict[str, DeviceSeen], home_last: datetime,
                       profile: ElderProfile) -> datetime:
        """When the whole home counts as silent: no device heard for two heartbeat intervals
        of its chatty devices, or every device's last will unanswered past the grace."""
        base = home_last if profile.rearmed_at is None else max(home_last, profile.rearmed_at)
        # The slowest of the chatty devices (at least hourly heartbeats) sets the window: a home
        # with a live motion sensor is not silent because a watch is charging.
        chatty = [dev.interval_s for dev in devices.values() if dev.interval_s <= 3600]
        window = max(chatty) if chatty else min(dev.interval_s for dev in devices.values())
        deadline = base + timedelta(seconds=self.c.offline_intervals * window)
        wills = [dev.will_at for dev in devices.values() if dev.heard]
        if wills and all(w is not None for w in wills):
            last_will = max(w for w in wills if w is not None)
            deadline = min(deadline, max(last_will, profile.rearmed_at or last_will)
                           + timedelta(seconds=self.c.will_grace_s))
        return deadline

    def on_timer(
        self, state: HealthState, now: datetime, profile: ElderProfile,
    ) -> Verdict[HealthState]:
        if state.first_seen is None or (state.due is not None and now < state.due):
            return Verdict(state)
        devices = dict(state.devices)
        for device_id, interval in profile.devices.items():  # registered but never heard
            if device_id not in devices:
                devices[device_id] = DeviceSeen(interval_s=interval, last=state.first_seen,
                                                heard=False)
            elif devices[device_id].interval_s != interval:
                devices[device_id] = devices[device_id].model_copy(update={"interval_s": interval})
        if not devices:
            return Verdict(state)
        alerts: list[Alert] = []
        deadlines = {d: self._deadline(dev, profile) for d, dev in devices.items()}
        home_last = max(dev.last for dev in devices.values())
        gateway_alerted_for = state.gateway_alerted_for
        if len(devices) > 1 and now >= self._home_deadline(devices, home_last, profile):
            if gateway_alerted_for != home_last:
                gateway_alerted_for = home_last
                alerts.append(Alert(
                    alert_id=alert_id("gateway_offline", profile.elder_id, home_last.isoformat()),
                    elder_id=profile.elder_id,
                    community_id=profile.community_id or state.community_id,
                    kind="gateway_offline", severity=Severity.HIGH, event_time=home_last,
                    detected_at=now, maintenance=True,
                    evidence=[{"devices": sorted(devices), "last_heard": home_last.isoformat()}],
                ))
            # Every device of the silent home is covered by the one gateway alert.
            devices = {d: dev.model_copy(update={"offline_alerted_for": dev.last})
                       for d, dev in devices.items()}
        else:
            for d, dev in devices.items():
                overdue = now >= deadlines[d] and dev.offline_alerted_for != dev.last
                if overdue and (len(devices) == 1 or home_last > deadlines[d]):
                    devices[d] = dev.model_copy(update={"offline_alerted_for": dev.last})
                    alerts.append(Alert(
                        alert_id=alert_id("device_offline", d, dev.last.isoformat()),
                        elder_id=profile.elder_id,
                        community_id=profile.community_id or state.community_id,
                        kind="device_offline", severity=Severity.MEDIUM, event_time=dev.last,
                        detected_at=now, device_id=d, room=dev.room, maintenance=True,
                        evidence=[{"device_kind": dev.kind, "last_heard": dev.last.isoformat(),
                                   "heartbeat_interval_s": dev.interval_s,
                                   "last_will": dev.will_at.isoformat() if dev.will_at else None}],
                    ))
        pending = [dl for d, dl in deadlines.items()
                   if devices[d].offline_alerted_for != devices[d].last]
        due = min(pending) if pending else None
        if not alerts and devices == state.devices and due == state.due:
            return Verdict(state)
        return Verdict(state.model_copy(update={"devices": devices, "due": due,
                                                "gateway_alerted_for": gateway_alerted_for}),
                       alerts)


def _interval(device_id: str, kind: str, profile: ElderProfile) -> int:
    if device_id in profile.devices:
        return profile.devices[device_id]
    return catalogue_interval(kind)


@functools.cache
def catalogue_interval(kind: str) -> int:
    """The heartbeat interval (s) the catalogue gives a device kind (an hour if unknown)."""
    try:
        return CATALOGUE[DeviceKind(kind)].heartbeat_interval_s
    except ValueError:
        return 3600
