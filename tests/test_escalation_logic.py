"""Escalation logic without services: ladders as data, recipients, SMS replies, phone types,
failure classification and backoff."""

from __future__ import annotations

import json

import aiohttp
import pytest
from pydantic import ValidationError
from twilio.base.exceptions import TwilioRestException

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
from foundation.contracts.alerts import Severity

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


def test_every_rendered_say_uses_the_voice_twilio_documents_for_its_language() -> None:
    """Twilio's default voice has no Mandarin; an invalid voice/language pair may fail the
    <Say>. Every <Say> the platform renders must use the pair in messages.VOICES."""
    import xml.etree.ElementTree as ET
    from datetime import UTC, datetime

    from dispatcher.messages import VOICES, IncidentFacts, say, voice_twiml
    from dispatcher.webhooks import _say
    from foundation.i18n import LANGUAGES

    assert VOICES["zh-Hans"] == ("Polly.Zhiyu", "cmn-CN")
    assert set(VOICES) == set(LANGUAGES)
    facts = IncidentFacts("王奶奶", "幸福路1号", "幸福社区", "smoke",
                          datetime(2026, 3, 1, 19, tzinfo=UTC))
    for lang in LANGUAGES:
        rendered = [voice_twiml(facts, "https://x/g?step=1", lang, key)
                    for key in ("voice.alert", "voice.realert", "voice.checkin")]
        rendered += [f"<Response>{say('x', lang)}{_say('y', lang)}</Response>"]
        for twiml in rendered:
            says = ET.fromstring(twiml).iter("Say")
            for s in says:
                assert (s.get("voice"), s.get("language")) == VOICES[lang], twiml
                assert s.text
    # An unknown language falls back to Mandarin, never to Twilio's default voice.
    assert 'voice="Polly.Zhiyu"' in say("x", "fr")


def test_fire_messages_carry_119_guidance_in_both_languages() -> None:
    from datetime import UTC, datetime

    from dispatcher.messages import IncidentFacts, family_sms, staff_sms

    fire = IncidentFacts("王奶奶", "幸福路1号", "幸福社区", "gas",
                         datetime(2026, 3, 1, 19, tzinfo=UTC))
    assert "119" in family_sms(fire) and "119" in family_sms(fire, "en")
    assert "119" in staff_sms(fire)
    sos = IncidentFacts("王奶奶", "幸福路1号", "幸福社区", "sos",
                        datetime(2026, 3, 1, 19, tzinfo=UTC))
    assert "119" not in family_sms(sos)
    # 19:00 UTC is 03:00 the next day in Shanghai, 14:00 in New York.
    assert "03月02日 03:00" in family_sms(sos)
    ny = IncidentFacts("Ann", "1 Main St", "Elm", "sos", datetime(2026, 3, 1, 19, tzinfo=UTC),
                       "America/New_York")
    assert "01 Mar 14:00" in family_sms(ny, "en")


@pytest.mark.parametrize("local,on", [
    ("2026-03-11T03:00", True),    # Wednesday 03:00: Tuesday's night shift
    ("2026-03-11T12:00", False),
    ("2026-03-10T22:00", True),    # Tuesday 22:00
    ("2026-03-10T07:59", False),   # Tuesday 07:59 belongs to Monday's night: not rostered
])
def test_a_night_shift_runs_past_midnight(local: str, on: bool) -> None:
    from datetime import datetime

    from dispatcher.roster import on_shift

    tuesday_night = [{"weekday": 1, "start": "20:00:00", "end": "08:00:00"}]
    assert on_shift(tuesday_night, datetime.fromisoformat(local)) is on
    assert on_shift([], datetime.fromisoformat(local)) is True  # no roster: the switch decides


def test_rules_are_validated_data() -> None:
    from dispatcher.ladder import DEFAULT_RULES, grouping_window, ladder_for, parse_rules

    assert grouping_window(DEFAULT_RULES, "sos", False, "fall", False) == 1800
    assert grouping_window(DEFAULT_RULES, "sos", False, "low_battery", True) is None
    assert grouping_window(DEFAULT_RULES, "low_battery", True, "low_battery", True) == 1800
    fire = ladder_for(DEFAULT_RULES, "smoke", Severity.CRITICAL, False)
    assert [r.target for r in fire.rungs[:3]] == ["console", "staff", "emergency_line"]
    assert ladder_for(DEFAULT_RULES, "vital", Severity.HIGH, False) == \
        DEFAULT_POLICIES[Severity.HIGH]
    with pytest.raises(ValidationError):
        parse_rules({"grouping": [{"kinds": [], "window_s": 60}]})
    with pytest.raises(ValidationError):
        parse_rules({"grouping": []})
    with pytest.raises(ValidationError, match="unknown target 'contact:x'"):
        parse_rules({"ladders": {"sos": {"rungs": [{"action": "call", "target": "contact:x"}]}}})
    with pytest.raises(ValidationError):  # a ladder, not a phone book
        parse_rules({"ladders": {"sos": {"rungs": [{"action": "sms", "target": "staff"}] * 31}}})
    with pytest.raises(ValidationError):
        parse_rules({"ladders": {"sos": {"rungs": [{"action": "page", "target": "staff"}]}}})


def test_notify_twilio_without_credentials_refuses_to_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from foundation.config import Settings

    for name in ("NOTIFY", "TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "TWILIO_FROM_NUMBER"):
        monkeypatch.delenv(f"ELDERCARE_{name}", raising=False)
    monkeypatch.setenv("ELDERCARE_NOTIFY", "twilio")
    monkeypatch.setenv("ELDERCARE_TWILIO_ACCOUNT_SID", "AC123")
    with pytest.raises(ValidationError) as err:
        Settings(_env_file=None)  # type: ignore[call-arg]
    assert "ELDERCARE_TWILIO_AUTH_TOKEN, ELDERCARE_TWILIO_FROM_NUMBER are empty" in str(err.value)
    monkeypatch.setenv("ELDERCARE_NOTIFY", "dry-run")
    assert Settings(_env_file=None).dry_run  # type: ignore[call-arg]
    monkeypatch.setenv("ELDERCARE_NOTIFY", "twillio")
    with pytest.raises(ValidationError):
        Settings(_env_file=None)  # type: ignore[call-arg]


async def test_the_dry_run_channel_without_a_database_remembers_what_it_sent() -> None:
    """The operator alarm's dry-run channel needs no database (it runs while it is down), and
    still answers "what did you send to this number since then?"."""
    from datetime import UTC, datetime, timedelta

    from dispatcher.channels import DryRunChannel, channel_for
    from foundation.config import Settings

    channel = DryRunChannel()
    since = datetime.now(UTC) - timedelta(seconds=1)
    sid = await channel.call("+8613800000001", "<Response/>", None)
    await channel.sms("+8613800000001", "hi", None)
    assert [s.sid for s in await channel.sent("call", "+8613800000001", since)] == [sid]
    assert await channel.sent("call", "+8613800000002", since) == []
    assert await channel.sent("call", "+8613800000001", datetime.now(UTC) + timedelta(1)) == []
    alarm = channel_for(Settings(_env_file=None, notify="dry-run"),  # type: ignore[call-arg]
                        keep_dry_runs=False)
    assert alarm.dry_run and await alarm.sms("+8613800000003", "db down", None)
