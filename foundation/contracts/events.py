"""The canonical event: what ingest puts on Kafka for every accepted device message."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

# Event types that are an alert by themselves (detectors/immediate.py): an SOS press, a
# sounding alarm, a device's own fall flag. Ingest hands them to Kafka without lingering.
URGENT_TYPES = frozenset({"sos", "fall", "smoke", "gas", "heat"})


class CanonicalEvent(BaseModel):
    """One validated, normalised device message, resolved to its elder. Keyed by elder on Kafka."""

    model_config = ConfigDict(frozen=True)

    event_id: str
    elder_id: str
    community_id: str
    device_id: str
    device_kind: str
    room: str | None = None
    type: str
    event_time: datetime
    received_at: datetime
    data: dict[str, Any]
    source: str = "mqtt"
    flags: list[str] = []

    def key(self) -> bytes:
        return self.elder_id.encode()

    @property
    def urgent(self) -> bool:
        """Whether this event is an alert by itself (`URGENT_TYPES`, unless an alarm reports
        it stopped sounding)."""
        return self.type in URGENT_TYPES and self.data.get("state") is not False

    @property
    def on_priority_lane(self) -> bool:
        """Whether ingest also writes this event to the priority lane (`kafka.URGENT`): every
        event of an urgent type, an alarm that stopped sounding included (the lane's alarm
        episodes need it)."""
        return self.type in URGENT_TYPES
