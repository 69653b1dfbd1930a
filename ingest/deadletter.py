"""Dead-letter records: the original bytes, where they came from, why, and when."""

from __future__ import annotations

import base64
import json
from datetime import datetime

from pydantic import BaseModel

from ingest.validate import Rejection

MAX_KEPT_BYTES = 512 * 1024  # Kafka's default message limit is 1 MiB; keep the record under it


class DeadLetter(BaseModel):
    source: str
    topic: str
    reason: str
    detail: str
    received_at: datetime
    payload_b64: str
    payload_size: int
    payload_truncated: bool

    def original(self) -> bytes:
        return base64.b64decode(self.payload_b64)


def dead_letter(
    source: str, topic: str, raw: bytes, rejection: Rejection, received_at: datetime,
) -> bytes:
    kept = raw[:MAX_KEPT_BYTES]
    record = DeadLetter(
        source=source, topic=topic, reason=rejection.reason, detail=rejection.detail,
        received_at=received_at, payload_b64=base64.b64encode(kept).decode(),
        payload_size=len(raw), payload_truncated=len(kept) < len(raw),
    )
    return json.dumps(record.model_dump(mode="json"), ensure_ascii=False).encode()
