"""The alert: what a detector concluded, with the evidence, on the alerts topic keyed by elder."""

from __future__ import annotations

import hashlib
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict


class Severity(StrEnum):
    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"

    @property
    def rank(self) -> int:
        return ["low", "medium", "high", "critical"].index(self.value)


class Alert(BaseModel):
    model_config = ConfigDict(frozen=True)

    alert_id: str
    elder_id: str
    community_id: str
    kind: str
    severity: Severity
    event_time: datetime
    detected_at: datetime
    device_id: str | None = None
    room: str | None = None
    evidence: list[dict[str, Any]] = []
    maintenance: bool = False

    def key(self) -> bytes:
        return self.elder_id.encode()


def alert_id(*parts: str) -> str:
    """Deterministic: the same evidence always gives the same id, so replays deduplicate.
    Built from an event, it takes the event time too: a device that reuses a `msg_id` (its
    counter restarted) must not give a new press the id of an old one."""
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]
