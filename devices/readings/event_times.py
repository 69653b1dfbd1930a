"""Event times as ingest writes them (ISO 8601 text), compared and read as UTC."""

from __future__ import annotations

from datetime import UTC, datetime


def utc(at: str) -> datetime:
    """An event time in UTC (a time without offset is UTC, as in the session)."""
    t = datetime.fromisoformat(at)
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def earlier(a: str, b: str) -> bool:
    """Whether event time `a` is before `b`. Two UTC times written alike (ingest writes them all
    the same way, ending in "Z"; Python's `isoformat` ends them in "+00:00") compare as text;
    anything else is parsed."""
    if len(a) == len(b) and a.endswith(("Z", "+00:00")) and a[-6:] == b[-6:]:
        return a < b
    return utc(a) < utc(b)
