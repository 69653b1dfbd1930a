"""Escalation policies as data. A policy is copied onto the incident when it opens, then expanded
into one step row per recipient, so later edits never change an escalation in flight.

A policy is a list of rungs run in order; each rung waits `wait_s` seconds after the rung before it
finished (the wait after a call is the time the callee has to press 1). When the last rung is done
and nobody has taken responsibility, the ladder starts again after `round_wait_s`, `rounds` times
in all."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from detectors.alerts import Severity

Action = Literal["console", "call", "sms"]


class Rung(BaseModel):
    """One rung: an action towards a target.

    Targets: "contact:N" (the contact with priority N), "contacts" (every contact), "staff"
    (on-duty staff of the elder's community), "emergency_line" (the community's emergency line),
    "console" (a push to every console)."""

    action: Action
    target: str
    wait_s: float = Field(0.0, ge=0)


class Policy(BaseModel):
    """An escalation ladder and how often it repeats without an acknowledgement."""

    rungs: list[Rung]
    rounds: int = Field(1, ge=1, le=10)
    round_wait_s: float = Field(60.0, ge=0)


def _r(action: Action, target: str, wait_s: float = 0.0) -> Rung:
    return Rung(action=action, target=target, wait_s=wait_s)


DEFAULT_POLICIES: dict[Severity, Policy] = {
    # The family hears the call ring while the SMS arrives; the next call comes 60 s after the
    # first (earlier if Twilio reports the first as unanswered, busy or an answering machine).
    Severity.CRITICAL: Policy(rungs=[
        _r("console", "console"),
        _r("sms", "staff"),
        _r("call", "contact:1"),
        _r("sms", "contacts", 15),
        _r("call", "contact:2", 45),
        _r("call", "contact:3", 60),
        _r("call", "staff", 60),
        _r("call", "emergency_line", 60),
    ], rounds=3, round_wait_s=60),
    Severity.HIGH: Policy(rungs=[
        _r("console", "console"),
        _r("sms", "staff"),
        _r("sms", "contacts"),
        _r("call", "contact:1", 120),
        _r("call", "staff", 120),
    ], rounds=2, round_wait_s=300),
    Severity.MEDIUM: Policy(rungs=[_r("console", "console"), _r("sms", "staff")]),
    Severity.LOW: Policy(rungs=[_r("console", "console")]),
}

# Device health: staff only, never a family call.
MAINTENANCE_POLICY = Policy(rungs=[_r("console", "console"), _r("sms", "staff")])

MAINTENANCE_KEY = "maintenance"


def default_policy(severity: Severity, maintenance: bool = False) -> Policy:
    """The built-in policy for an alert of this severity."""
    return MAINTENANCE_POLICY if maintenance else DEFAULT_POLICIES[severity]


def policy_key(severity: Severity, maintenance: bool) -> str:
    """The `escalation_policies.severity` value an elder's override is stored under."""
    return MAINTENANCE_KEY if maintenance else severity.value


def staff_only(policy: Policy) -> Policy:
    """Drop every rung that reaches the family: maintenance alerts go to staff only."""
    rungs = [r for r in policy.rungs if r.target in ("console", "staff")]
    return Policy(rungs=rungs or MAINTENANCE_POLICY.rungs, rounds=policy.rounds,
                  round_wait_s=policy.round_wait_s)


def parse_policy(raw: Any) -> Policy:
    """A stored policy; raises pydantic.ValidationError with the reason if it is malformed."""
    return Policy.model_validate(raw)
