"""Elder profiles from the registry (elders, devices, away periods), cached for a minute.

Read defensively: columns and tables added by later migrations may be missing."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from detectors.base import ElderProfile
from foundation import db, logs

log = logs.get(__name__)


@dataclass
class ProfileRecord:
    """What the registry says of one elder; `at()` makes the profile for a moment."""

    elder_id: str
    community_id: str = ""
    lives_alone: bool = False
    thresholds: dict[str, float] = field(default_factory=dict)
    devices: dict[str, int] = field(default_factory=dict)
    away: list[tuple[datetime, datetime | None]] = field(default_factory=list)
    loaded_at: float = 0.0
    home: dict[str, Any] | None = None
    safe_zone: dict[str, Any] | None = None
    # The last profile made, reused while nothing in it can differ (the engine asks for one
    # per event); `ProfileCache.refresh` forgets it.
    made: ElderProfile | None = field(default=None, repr=False, compare=False)

    def at(self, t: datetime, rearmed_at: datetime | None = None) -> ElderProfile:
        away = bool(self.away) and any(s <= t and (e is None or t < e) for s, e in self.away)
        made = self.made
        if made is not None and made.away == away and made.rearmed_at == rearmed_at:
            return made
        self.made = ElderProfile(self.elder_id, self.community_id, self.lives_alone, away,
                                 self.thresholds, self.devices, rearmed_at, self.home,
                                 self.safe_zone)
        return self.made


class ProfileCache:
    """Profiles by elder id, refreshed in bulk when older than `ttl_s`."""

    def __init__(self, pool: db.Pool | None, ttl_s: float) -> None:
        self.pool = pool
        self.ttl_s = ttl_s
        self.records: dict[str, ProfileRecord] = {}
        self._has_away: bool | None = None

    def get(self, elder_id: str, community_id: str = "") -> ProfileRecord:
        record = self.records.get(elder_id)
        if record is None:
            record = self.records[elder_id] = ProfileRecord(elder_id, community_id)
        return record

    def stale(self, elder_ids: list[str]) -> list[str]:
        limit = time.monotonic() - self.ttl_s
        return [e for e in elder_ids
                if (r := self.records.get(e)) is None or r.loaded_at < limit]

    def loaded(self, elder_id: str) -> bool:
        """Whether this elder was ever read from the registry (or found missing there)."""
        record = self.records.get(elder_id)
        return record is not None and record.loaded_at > 0

    async def load_all(self, chunk: int = 5000) -> int:
        """Read every elder of the registry (in chunks of `chunk`); returns how many."""
        if self.pool is None:
            return 0
        async with self.pool.connection() as conn:
            rows = await (await conn.execute("SELECT id FROM elders ORDER BY id")).fetchall()
        ids = [r["id"] for r in rows]
        for i in range(0, len(ids), chunk):
            await self.refresh(ids[i:i + chunk])
        return len(ids)

    async def refresh(self, elder_ids: list[str]) -> None:
        """Load these elders from the registry (unknown elders keep a default profile)."""
        if self.pool is None or not elder_ids:
            for e in elder_ids:
                self.get(e).loaded_at = time.monotonic()
                self.get(e).made = None
            return
        async with self.pool.connection() as conn:
            if self._has_away is None:
                row = await (await conn.execute(
                    "SELECT to_regclass('elder_away_periods') IS NOT NULL AS ok")).fetchone()
                self._has_away = bool(row and row["ok"])
            # One round trip for the three reads: an SOS of an elder not seen lately waits
            # for them before its alert.
            async with conn.pipeline():
                elders_read = await conn.execute(
                    "SELECT id, to_jsonb(e) AS row FROM elders e WHERE id = ANY(%s)", (elder_ids,))
                devices_read = await conn.execute(
                    "SELECT id, elder_id, heartbeat_interval_s FROM devices"
                    " WHERE elder_id = ANY(%s) AND active", (elder_ids,))
                away_read = await conn.execute(
                    "SELECT elder_id, starts_at, ends_at FROM elder_away_periods"
                    " WHERE elder_id = ANY(%s) AND (ends_at IS NULL OR ends_at > now()"
                    " - interval '7 days')", (elder_ids,)) if self._has_away else None
            elders = await elders_read.fetchall()
            devices = await devices_read.fetchall()
            away: list[dict[str, Any]] = await away_read.fetchall() if away_read else []
        now = time.monotonic()
        for e in elder_ids:
            r = self.get(e)
            r.devices, r.away, r.loaded_at = {}, [], now
        for row in elders:
            r, data = self.get(row["id"]), row["row"]
            r.community_id = data.get("community_id", r.community_id)
            r.lives_alone = bool(data.get("lives_alone", False))
            r.thresholds = _thresholds(data.get("detector_thresholds"))
            r.home, r.safe_zone = _json(data.get("home")), _json(data.get("safe_zone"))
        for row in devices:
            self.get(row["elder_id"]).devices[row["id"]] = int(row["heartbeat_interval_s"])
        for row in away:
            self.get(row["elder_id"]).away.append((row["starts_at"], row["ends_at"]))
        for e in elder_ids:
            self.get(e).made = None


def _json(raw: object) -> dict[str, Any] | None:
    if isinstance(raw, str):
        raw = json.loads(raw)
    return raw if isinstance(raw, dict) else None


def _thresholds(raw: object) -> dict[str, float]:
    if isinstance(raw, str):
        raw = json.loads(raw)
    if not isinstance(raw, dict):
        return {}
    out: dict[str, float] = {}
    for k, v in raw.items():
        try:
            out[str(k)] = float(v)
        except (TypeError, ValueError):
            log.warning("elder threshold ignored", key=k, value=v)
    return out
