"""Escalation ladders as data. A ladder is copied onto the incident when it opens, then expanded
into one step row per recipient, so later edits never change an escalation in flight."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from detectors.alerts import Severity

Action = Literal["call", "sms", "staff_sms", "console"]


class Rung(BaseModel):
    """One rung: an action towards a target `after_s` seconds after the incident opened.

    Targets: "contact:N" (N-th contact), "contacts" (every contact), "staff" (on-duty staff of the
    elder's community), "console"."""

    action: Action
    target: str
    after_s: int = 0


DEFAULT_LADDERS: dict[Severity, list[Rung]] = {
    Severity.CRITICAL: [
        Rung(action="console", target="console"),
        Rung(action="call", target="contact:1"),
        Rung(action="sms", target="contacts"),
        Rung(action="staff_sms", target="staff"),
        Rung(action="call", target="contact:2", after_s=60),
        Rung(action="call", target="contact:3", after_s=120),
    ],
    Severity.HIGH: [
        Rung(action="console", target="console"),
        Rung(action="sms", target="contacts"),
        Rung(action="staff_sms", target="staff"),
        Rung(action="call", target="contact:1", after_s=120),
    ],
    Severity.MEDIUM: [
        Rung(action="console", target="console"),
        Rung(action="staff_sms", target="staff"),
    ],
    Severity.LOW: [Rung(action="console", target="console")],
}

MAINTENANCE_LADDER = [Rung(action="console", target="console")]


def ladder_for(severity: Severity, maintenance: bool = False) -> list[Rung]:
    return MAINTENANCE_LADDER if maintenance else DEFAULT_LADDERS[severity]
