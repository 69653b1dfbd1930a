"""Detectors that need no history: SOS, smoke/gas/heat alarms and a device's own fall flag."""

from __future__ import annotations

from datetime import datetime

from foundation.contracts.alerts import Alert, Severity, alert_id
from foundation.contracts.events import URGENT_TYPES, CanonicalEvent

_KINDS = {kind: kind for kind in URGENT_TYPES}  # the alert kind is the event type


def immediate_alert(event: CanonicalEvent, now: datetime) -> Alert | None:
    """A critical alert for an SOS press, a sounding alarm or a device-reported fall."""
    kind = _KINDS.get(event.type)
    if kind is None or event.data.get("state") is False:
        return None
    return Alert(
        alert_id=alert_id(kind, event.event_id, event.event_time.isoformat()),
        elder_id=event.elder_id,
        community_id=event.community_id, kind=kind, severity=Severity.CRITICAL,
        event_time=event.event_time, detected_at=now, device_id=event.device_id,
        room=event.room, evidence=[event.model_dump(mode="json")],
    )
