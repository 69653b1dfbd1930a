"""Escalation policies as data. A policy is copied onto the incident when it opens, then expanded
into one step row per recipient, so later edits never change an escalation in flight.

A policy is a list of rungs run in order; each rung waits `wait_s` seconds after the rung before it
finished (the wait after a call is the time the callee has to press 1). When the last rung is done
and nobody has taken responsibility, the ladder starts again after `round_wait_s`, `rounds` times
in all."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

from foundation.contracts.alerts import Severity

Action = Literal["console", "call", "sms", "queue"]


class Rung(BaseModel):
    """One rung: an action towards a target.

    Targets: "contact:N" (the contact with priority N), "contacts" (every contact), "staff"
    (staff on shift now, dispatcher/roster.py), "duty_lead" (the lead on shift), "elder" (the
    elder's own phone), "acknowledger" (whoever took responsibility), "emergency_line" (the
    community's emergency line), "console" (a push to every console).

    Actions: "call", "sms", "console", and "queue" (a work item on the staff console, nobody is
    woken)."""

    action: Action
    target: str
    wait_s: float = Field(0.0, ge=0)


class Policy(BaseModel):
    """An escalation ladder and how often it repeats without an acknowledgement."""

    rungs: list[Rung] = Field(max_length=30)  # a ladder, not a phone book
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

# Device health: a work item in the staff queue; nobody is called or texted for a battery.
MAINTENANCE_POLICY = Policy(rungs=[_r("console", "console"), _r("queue", "staff")])

# Fire, gas, heat: the community moves first (duty staff and the emergency line at once), the
# family is texted in parallel with "call 119" guidance (sms.alert.<kind>), then called.
FIRE_POLICY = Policy(rungs=[
    _r("console", "console"),
    _r("call", "staff"),
    _r("call", "emergency_line"),
    _r("sms", "staff"),
    _r("sms", "contacts"),
    _r("call", "contact:1", 60),
    _r("call", "contact:2", 60),
], rounds=3, round_wait_s=60)

# A missed check-in: a wellbeing call to the elder first (pressing 1 means "I am fine"), then
# contact 1, then the staff.
CHECKIN_POLICY = Policy(rungs=[
    _r("console", "console"),
    _r("call", "elder"),
    _r("call", "contact:1", 120),
    _r("sms", "staff", 120),
])

# A repeated press after someone took responsibility: "老人再次求救" to the duty staff and to the
# person who acknowledged (dispatcher/incidents.py).
REALERT_POLICY = Policy(rungs=[
    _r("console", "console"), _r("sms", "staff"), _r("call", "acknowledger"),
    _r("sms", "acknowledger"),
])

# Acknowledged but not resolved after `Rules.ack_reminder_s`: the claimer and the duty lead.
REMINDER_POLICY = Policy(rungs=[_r("sms", "acknowledger"), _r("sms", "duty_lead")])

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


TARGETS = "contact:N, contacts, staff, duty_lead, elder, acknowledger, emergency_line, console"
TARGET = re.compile(
    r"contact:[1-9][0-9]?|contacts|staff|duty_lead|elder|acknowledger|emergency_line|console")


class GroupingRule(BaseModel):
    """Alerts of one elder whose kinds are both in `kinds` ("*": every kind that is not device
    maintenance) join one incident while it is unresolved and either nobody has taken it yet or
    its last alert is younger than `window_s`."""

    kinds: list[str] = Field(default_factory=lambda: ["*"], min_length=1, max_length=50)
    window_s: float = Field(1800.0, ge=0, le=7 * 86400)

    def covers(self, kind: str, maintenance: bool) -> bool:
        """Whether an alert of this kind falls under the rule."""
        return kind in self.kinds or ("*" in self.kinds and not maintenance)


class Rules(BaseModel):
    """Everything a community may tune about its emergencies, validated as a whole.

    `ladders` maps an alert kind (or "maintenance") to its ladder; a kind without one uses the
    ladder of its severity. An elder's own policy (escalation_policies) still comes first."""

    grouping: list[GroupingRule] = Field(default_factory=lambda: [GroupingRule()], min_length=1,
                                         max_length=20)
    ladders: dict[str, Policy] = Field(default_factory=dict, max_length=50)
    realert_every_s: float = Field(60.0, ge=0, le=3600)
    ack_reminder_s: float = Field(600.0, ge=10, le=86400)

    @model_validator(mode="after")
    def _known_targets(self) -> Rules:
        for kind, policy in self.ladders.items():
            for n, rung in enumerate(policy.rungs):
                if not TARGET.fullmatch(rung.target):
                    raise ValueError(f"ladders.{kind}.rungs[{n}]: unknown target"
                                     f" {rung.target!r} (one of {TARGETS})")
        return self


DEFAULT_LADDERS: dict[str, Policy] = {
    "smoke": FIRE_POLICY, "gas": FIRE_POLICY, "heat": FIRE_POLICY,
    "sos": DEFAULT_POLICIES[Severity.CRITICAL], "fall": DEFAULT_POLICIES[Severity.CRITICAL],
    "checkin_missed": CHECKIN_POLICY, MAINTENANCE_KEY: MAINTENANCE_POLICY,
}

DEFAULT_RULES = Rules(ladders=DEFAULT_LADDERS)


def ladder_for(rules: Rules, kind: str, severity: Severity, maintenance: bool) -> Policy:
    """The community's ladder for an alert: by kind, else by severity."""
    key = MAINTENANCE_KEY if maintenance else kind
    policy = rules.ladders.get(key) or DEFAULT_LADDERS.get(key)
    return policy if policy is not None else default_policy(severity, maintenance)


def grouping_window(
    rules: Rules, incident_kind: str, incident_maintenance: bool, kind: str, maintenance: bool,
) -> float | None:
    """How long after its last alert an incident still takes an alert of `kind` once someone
    has taken it; None if the two never share an incident. Device maintenance never mixes
    with an emergency, and joins only an incident of its own kind."""
    if maintenance or incident_maintenance:
        same = maintenance and incident_maintenance and kind == incident_kind
        return rules.grouping[0].window_s if same else None
    for rule in rules.grouping:
        if rule.covers(kind, False) and rule.covers(incident_kind, False):
            return rule.window_s
    return rules.grouping[0].window_s if kind == incident_kind else None


def parse_rules(raw: Any) -> Rules:
    """Stored or submitted rules; raises pydantic.ValidationError with the reason."""
    return Rules.model_validate(raw)
