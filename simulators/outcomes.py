"""What the platform did for a scenario's elders: alerts (from Kafka), incidents and calls/SMS
(from PostgreSQL); and the check of each expectation against them."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from devices.catalogue import STATUS_TYPES
from foundation import kafka, logs
from foundation.config import Settings
from simulators.clock import parse_duration
from simulators.scenario import Expectation

log = logs.get(__name__)

# The consumer groups that must have caught up before an absence of alerts means anything.
# (In this order: the detectors' priority lane alerts on urgent events, before the dispatcher.)
PIPELINE_GROUPS = {kafka.EVENTS: "eldercare-detectors", kafka.URGENT: "eldercare-detectors-urgent",
                   kafka.ALERTS: "eldercare-dispatcher"}


@dataclass
class Seen:
    alerts: list[dict[str, Any]] = field(default_factory=list)
    incidents: list[dict[str, Any]] = field(default_factory=list)
    notifications: list[dict[str, Any]] = field(default_factory=list)
    events: int = 0


class Observer:
    """Follows the events and alerts topics from the moment it starts, for the given elders."""

    def __init__(self, settings: Settings, elder_ids: set[str]) -> None:
        self.settings = settings
        self.elder_ids = elder_ids
        self.seen = Seen()
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap, group_id=None, fetch_max_wait_ms=20,
            client_id=f"scenario-{uuid.uuid4().hex[:6]}",
        )
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._consumer.start()
        parts = [TopicPartition(t, p) for t in (kafka.EVENTS, kafka.ALERTS)
                 for p in (self._consumer.partitions_for_topic(t) or set())]
        self._consumer.assign(parts)
        await self._consumer.seek_to_end(*parts)
        for tp in parts:  # resolve positions now: later records are ours to see
            await self._consumer.position(tp)
        self._task = asyncio.create_task(self._follow())

    async def _follow(self) -> None:
        while True:
            batches = await self._consumer.getmany(timeout_ms=200)
            for tp, recs in batches.items():
                for r in recs:
                    if r.key is None or r.key.decode() not in self.elder_ids:
                        continue
                    if tp.topic == kafka.ALERTS:
                        self.seen.alerts.append(json.loads(r.value))
                    elif json.loads(r.value).get("type") not in STATUS_TYPES:
                        self.seen.events += 1  # device events only: wills are not published

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        await self._consumer.stop()

    def refresh_db(self) -> None:
        """Reload this run's incidents and notifications from PostgreSQL."""
        ids = list(self.elder_ids)
        with psycopg.connect(self.settings.database_url) as conn:
            conn.row_factory = psycopg.rows.dict_row  # type: ignore[assignment]
            self.seen.incidents = [dict(r) for r in conn.execute(
                "SELECT id, elder_id, kind, severity, status, event_time, maintenance"
                " FROM incidents WHERE elder_id = ANY(%s)", (ids,))]
            self.seen.notifications = [dict(r) for r in conn.execute(
                "SELECT i.elder_id, n.channel, n.to_number, n.status FROM notifications n"
                " JOIN incidents i ON i.id = n.incident_id WHERE i.elder_id = ANY(%s)", (ids,))]

    async def drained(self, published: int, timeout: float) -> bool:
        """True once ingest has produced all `published` events and the detectors and dispatcher
        have committed past everything on their topics (a barrier, not a sleep)."""
        deadline = time.monotonic() + timeout
        while self.seen.events < published:
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.1)
        admin = AIOKafkaAdminClient(bootstrap_servers=self.settings.kafka_bootstrap)
        await admin.start()
        try:
            for topic, group in PIPELINE_GROUPS.items():
                parts = [TopicPartition(topic, p)
                         for p in (self._consumer.partitions_for_topic(topic) or set())]
                ends = await self._consumer.end_offsets(parts)
                while True:
                    done = await admin.list_consumer_group_offsets(group, partitions=parts)
                    # -1: nothing ever committed, which is caught up only on an empty partition
                    if all(max(0, done[tp].offset if tp in done else 0) >= ends[tp]
                           for tp in parts):
                        break
                    if time.monotonic() > deadline:
                        return False
                    await asyncio.sleep(0.1)
        except Exception as exc:  # a broker without offset fetch: fall back on the timeout
            log.warning("cannot read consumer offsets", error=str(exc))
            return False
        finally:
            await admin.close()
        return True


@dataclass
class Verdict:
    expectation: Expectation
    ok: bool
    detail: str


def _epoch(v: Any) -> float:
    if isinstance(v, datetime):
        return v.timestamp()
    return datetime.fromisoformat(str(v)).timestamp()


def check(exp: Expectation, elder_id: str, contacts: dict[int, str], since: float,
          seen: Seen) -> Verdict:
    """Does what was seen satisfy `exp`? `since` is the epoch the `within` bound starts at."""
    limit = parse_duration(exp.within) if exp.within is not None else None

    def in_time(t: Any) -> bool:
        return limit is None or _epoch(t) - since <= limit

    alerts = [a for a in seen.alerts if a["elder_id"] == elder_id]
    if exp.alert:
        hits = [a for a in alerts if a["kind"] == exp.alert]
        good = [a for a in hits if in_time(a["event_time"])]
        if good:
            delay = _epoch(good[0]["event_time"]) - since
            return Verdict(exp, True, f"{len(good)} alert(s), first at +{delay:.0f}s sim")
        return Verdict(exp, False, _late(hits, "event_time", since, "alerts")
                       or f"none; alerts seen: {sorted({a['kind'] for a in alerts}) or '-'}")
    if exp.incident:
        rows = [r for r in seen.incidents if r["elder_id"] == elder_id
                and r["kind"] == exp.incident]
        good = [r for r in rows if in_time(r["event_time"])]
        if good:
            return Verdict(exp, True, f"incident {good[0]['status']} ({good[0]['severity']})")
        kinds = sorted({r["kind"] for r in seen.incidents if r["elder_id"] == elder_id})
        return Verdict(exp, False, _late(rows, "event_time", since, "incidents")
                       or f"none; incidents: {kinds or '-'}")
    if exp.incidents is not None:
        # Emergencies only: a device-health work item is an incident of its own by design.
        mine = [r for r in seen.incidents if r["elder_id"] == elder_id
                and not r.get("maintenance", False)]
        listed = ", ".join(sorted(r["kind"] for r in mine)) or "-"
        return Verdict(exp, len(mine) == exp.incidents, f"{len(mine)} incident(s): {listed}")
    if exp.call is not None or exp.sms is not None:
        priority = exp.call if exp.call is not None else exp.sms
        channel = "voice" if exp.call is not None else "sms"
        phone = contacts.get(priority or 0, "?")
        sent = [n for n in seen.notifications if n["elder_id"] == elder_id
                and n["channel"] == channel and n["to_number"] == phone]
        ok = bool(sent) if exp.times is None else len(sent) == exp.times
        return Verdict(exp, ok, f"{len(sent)} {channel} to {phone} ({sent[0]['status']})"
                       if sent else f"no {channel} to {phone}")
    banned: set[str] | None = None if exp.no_alert == "any" else set(
        [exp.no_alert] if isinstance(exp.no_alert, str) else exp.no_alert or [])
    bad = [a for a in alerts if (a["kind"] in banned if banned is not None
                                 else not a.get("maintenance", False))]
    if bad:
        return Verdict(exp, False, "got " + ", ".join(sorted({a["kind"] for a in bad})))
    return Verdict(exp, True, "none")


def _late(rows: list[dict[str, Any]], key: str, since: float, what: str) -> str:
    if not rows:
        return ""
    first = min(_epoch(r[key]) for r in rows) - since
    return f"{len(rows)} {what}, but the first at +{first:.0f}s sim (too late)"
