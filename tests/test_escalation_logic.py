"""Escalation logic without services: ladders as data, recipients, SMS replies, phone types,
failure classification and backoff."""

from __future__ import annotations

import json

import aiohttp
import pytest
from pydantic import ValidationError
from twilio.base.exceptions import TwilioRestException

from detectors.alerts import Severity
from dispatcher.channels import failure_kind
from dispatcher.incidents import recipients
from dispatcher.ladder import (
    DEFAULT_POLICIES,
    MAINTENANCE_POLICY,
    Rung,
    default_policy,
    parse_policy,
    policy_key,
    staff_only,
)
from dispatcher.phones import can_receive_sms
from dispatcher.steps import RetryPolicy
from dispatcher.webhooks import is_ack_reply

CONTACTS = [
    {"priority": 1, "name": "女儿", "phone": "+8613812345678", "can_sms": True,
     "language": "zh-Hans", "channels": ["voice", "sms"]},
    {"priority": 2, "name": "儿子", "phone": "+8613912345678", "can_sms": True,
     "language": "en", "channels": ["voice", "sms"]},
    {"priority": 3, "name": "老伴家座机", "phone": "+861087654321", "can_sms": True,
     "language": "zh-Hans", "channels": ["voice", "sms"]},
    {"priority": 4, "name": "只收短信", "phone": "+8613712345678", "can_sms": True,
     "language": "zh-Hans", "channels": ["sms"]},
]
STAFF = [{"id": "s1", "name": "值班员", "phone": "+8613612345678"}]


def test_critical_default_follows_the_agreed_order() -> None:
    rungs = [(r.action, r.target) for r in DEFAULT_POLICIES[Severity.CRITICAL].rungs]
    assert rungs == [
        ("console", "console"), ("sms", "staff"), ("call", "contact:1"), ("sms", "contacts"),
        ("call", "contact:2"), ("call", "contact:3"), ("call", "staff"),
        ("call", "emergency_line"),
    ]
    assert DEFAULT_POLICIES[Severity.CRITICAL].rounds > 1  # re-notify until someone responds


def test_maintenance_goes_to_staff_only() -> None:
    assert default_policy(Severity.CRITICAL, maintenance=True) is MAINTENANCE_POLICY
    assert {r.target for r in MAINTENANCE_POLICY.rungs} <= {"console", "staff"}
    trimmed = staff_only(DEFAULT_POLICIES[Severity.CRITICAL])
    assert {r.target for r in trimmed.rungs} == {"console", "staff"}
    assert policy_key(Severity.LOW, True) == "maintenance"
    assert policy_key(Severity.HIGH, False) == "high"


def test_stored_policy_is_validated() -> None:
    policy = parse_policy({"rungs": [{"action": "call", "target": "contact:1", "wait_s": 0.5}],
                           "rounds": 2, "round_wait_s": 1})
    assert policy.rounds == 2 and policy.rungs[0].wait_s == 0.5
    with pytest.raises(ValidationError):
        parse_policy({"rungs": [{"action": "fax", "target": "contact:1"}]})
    with pytest.raises(ValidationError):
        parse_policy({"rungs": [], "rounds": 0})


def test_landlines_are_called_but_never_texted() -> None:
    sms = recipients(Rung(action="sms", target="contacts"), CONTACTS, STAFF, "")
    assert [p["name"] for p in sms] == ["女儿", "儿子", "只收短信"]
    calls = recipients(Rung(action="call", target="contacts"), CONTACTS, STAFF, "")
    assert [p["name"] for p in calls] == ["女儿", "儿子", "老伴家座机"]
    assert recipients(Rung(action="call", target="contact:3"), CONTACTS, STAFF, "")[0][
        "phone"] == "+861087654321"
    assert "sms" not in calls[0] and "voice" not in sms[0]


def test_staff_emergency_line_and_console_recipients() -> None:
    assert recipients(Rung(action="sms", target="staff"), CONTACTS, STAFF, "")[0]["kind"] == \
        "staff"
    line = recipients(Rung(action="call", target="emergency_line"), CONTACTS, STAFF, "+86101")
    assert line == [{"kind": "emergency_line", "name": "emergency_line", "phone": "+86101",
                     "language": "zh-Hans"}]
    assert recipients(Rung(action="sms", target="emergency_line"), CONTACTS, STAFF, "+86101") \
        == []
    assert recipients(Rung(action="call", target="emergency_line"), CONTACTS, STAFF, "") == []
    assert recipients(Rung(action="console", target="console"), [], [], "")[0]["kind"] == \
        "console"
    assert recipients(Rung(action="call", target="contact:9"), CONTACTS, STAFF, "") == []
    assert recipients(Rung(action="call", target="contact:x"), CONTACTS, STAFF, "") == []


@pytest.mark.parametrize("phone,ok", [
    ("+8613812345678", True), ("+861087654321", False), ("+15017122661", True),
    ("not a number", False), ("13812345678", True),
])
def test_sms_capable_numbers(phone: str, ok: bool) -> None:
    assert can_receive_sms(phone) is ok


@pytest.mark.parametrize("body,ok", [
    ("1", True), ("收到", True), ("好", True), (" 好的！", True), ("收到。", True), ("OK", True),
    ("2", False), ("谁？", False), ("", False), ("不好", False),
])
def test_sms_replies_that_take_responsibility(body: str, ok: bool) -> None:
    assert is_ack_reply(body) is ok


def test_failures_are_classified_for_retry() -> None:
    assert failure_kind(TwilioRestException(500, "u")) == "retry"
    assert failure_kind(TwilioRestException(503, "u")) == "retry"
    assert failure_kind(TwilioRestException(429, "u")) == "retry"
    assert failure_kind(TwilioRestException(400, "u")) == "failed"
    assert failure_kind(TimeoutError()) == "unknown"
    assert failure_kind(aiohttp.ServerDisconnectedError()) == "unknown"
    assert failure_kind(ValueError()) == "failed"


def test_backoff_doubles_with_jitter() -> None:
    retry = RetryPolicy(attempts=4, backoff_s=1.0)
    for attempt, base in ((1, 1.0), (2, 2.0), (3, 4.0)):
        assert base * 0.8 <= retry.delay(attempt) <= base * 1.2


def test_policy_show_prints_the_default_as_json(capsys: pytest.CaptureFixture[str]) -> None:
    from eldercare.cli import build_parser

    args = build_parser().parse_args(["policy", "show", "maintenance"])
    assert args.func(args, None) == 0
    shown = parse_policy(json.loads(capsys.readouterr().out))
    assert shown == MAINTENANCE_POLICY
