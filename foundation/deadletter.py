"""Dead-letter records: the original bytes, where they came from, why, and when.

A record has a size cap whatever it is given: the original is kept up to `MAX_KEPT_BYTES` (its
full length and SHA-256 always), the detail up to `MAX_DETAIL_CHARS`; so a dead letter can
always be produced (Kafka's default record limit is 1 MiB)."""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from datetime import datetime

from pydantic import BaseModel

MAX_KEPT_BYTES = 128 * 1024
MAX_DETAIL_CHARS = 4000


@dataclass(frozen=True)
class Rejection:
    """Why a message was not accepted; `reason` is a stable code used in metrics."""

    reason: str
    detail: str


class DeadLetter(BaseModel):
    source: str
    topic: str
    reason: str
    detail: str
    received_at: datetime
    payload_b64: str
    payload_size: int
    payload_truncated: bool
    payload_sha256: str = ""  # of the whole original, also when truncated
    detail_truncated: bool = False

    def original(self) -> bytes:
        return base64.b64decode(self.payload_b64)


def dead_letter(
    source: str, topic: str, raw: bytes, rejection: Rejection, received_at: datetime,
) -> bytes:
    """The dead-letter record of `raw` (JSON bytes), at most ~180 KiB."""
    kept = raw[:MAX_KEPT_BYTES]
    detail = rejection.detail
    record = DeadLetter(
        source=source, topic=topic[:1000], reason=rejection.reason,
        detail=detail[:MAX_DETAIL_CHARS], detail_truncated=len(detail) > MAX_DETAIL_CHARS,
        received_at=received_at, payload_b64=base64.b64encode(kept).decode(),
        payload_size=len(raw), payload_truncated=len(kept) < len(raw),
        payload_sha256=hashlib.sha256(raw).hexdigest(),
    )
    # A lone surrogate (from an exception text) is written as its JSON escape, never fails.
    return json.dumps(record.model_dump(mode="json"), ensure_ascii=False).encode(
        errors="backslashreplace")
