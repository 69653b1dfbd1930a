"""Twilio webhooks (voice Gather, call/SMS status, inbound SMS), mounted by the console app.

Every request must carry a valid `X-Twilio-Signature` for `settings.public_base_url` + path +
query, computed with the account's auth token; anything else gets 403 and changes nothing.
Each MessageSid / CallSid (per status, for status callbacks) is applied once: a captured request
replayed later changes nothing (table `twilio_webhooks_applied`, migration 0009)."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl
from xml.sax.saxutils import escape

from fastapi import APIRouter, HTTPException, Request, Response
from psycopg import AsyncConnection
from twilio.request_validator import RequestValidator

from dispatcher.incidents import timeline
from dispatcher.lifecycle import acknowledge
from dispatcher.messages import say
from dispatcher.progress import alarm_if_all_channels_failed
from dispatcher.steps import CALL_NOT_ANSWERED
from foundation import logs
from foundation.config import Settings
from foundation.i18n import t
from foundation.masking import mask_phone

log = logs.get(__name__)

router = APIRouter(prefix="/twilio", tags=["twilio"])

# Replies that take responsibility ("1", "好", "收到"), compared after stripping punctuation.
ACK_REPLIES = frozenset({"1", "好", "好的", "收到", "ok"})
_PUNCT = re.compile(r"[\s。，,.!！~～、]+")


def is_ack_reply(body: str) -> bool:
    """True for an SMS reply that takes responsibility."""
    return _PUNCT.sub("", body).lower() in ACK_REPLIES


def signed_url(settings: Settings, request: Request) -> str:
    """The URL Twilio requested, as the public base URL sees it (behind any proxy)."""
    query = request.url.query
    return settings.public_base_url.rstrip("/") + request.url.path + (f"?{query}" if query else "")


async def verified_form(request: Request) -> dict[str, str]:
    """The form parameters of a genuine Twilio request; 403 otherwise."""
    settings: Settings = request.app.state.settings
    body = (await request.body()).decode("utf-8", "replace")
    params = dict(parse_qsl(body, keep_blank_values=True))
    signature = request.headers.get("x-twilio-signature", "")
    if not settings.twilio_auth_token or not signature or not RequestValidator(
        settings.twilio_auth_token
    ).validate(signed_url(settings, request), params, signature):
        log.warning("twilio webhook refused: bad signature", path=request.url.path)
        raise HTTPException(403, "invalid X-Twilio-Signature")
    return params


def _sid(form: dict[str, str], *names: str) -> str:
    """The request's Twilio id (MessageSid / CallSid); 422 without one, as it cannot be
    applied once."""
    for name in names:
        if form.get(name):
            return form[name]
    raise HTTPException(422, f"missing {' or '.join(names)}")


async def first_application(conn: AsyncConnection[Any], key: str) -> bool:
    """Mark the webhook `key` applied, in the caller's transaction; False when it already was
    (a replay, or Twilio retrying a request we answered)."""
    cur = await conn.execute("INSERT INTO twilio_webhooks_applied (key) VALUES (%s)"
                             " ON CONFLICT DO NOTHING", (key,))
    return cur.rowcount == 1


def _twiml(inner: str) -> Response:
    return Response(f"<Response>{inner}</Response>", media_type="application/xml")


def _say(text: str, lang: str) -> str:
    return say(text, lang)  # the voice Twilio documents for the language (messages.VOICES)


async def _notification(conn: AsyncConnection[Any], step: str | None) -> dict[str, Any] | None:
    if not step or not step.isdigit():
        return None
    return await (await conn.execute(
        "SELECT n.id, n.incident_id, n.channel, n.recipient, n.to_number, s.seq, s.target,"
        " i.status AS incident_status, i.acknowledged_by FROM notifications n"
        " JOIN escalation_steps s ON s.id = n.step_id JOIN incidents i ON i.id = n.incident_id"
        " WHERE n.idempotency_key = %s", (f"step:{step}",),
    )).fetchone()


@router.post("/voice/gather")
async def voice_gather(request: Request, step: str | None = None) -> Response:
    """The callee pressed a key during the alert call; 1 takes responsibility."""
    form = await verified_form(request)
    call_sid = _sid(form, "CallSid")
    async with request.app.state.pool.connection() as conn:
        n = await _notification(conn, step)
        if n is None:
            raise HTTPException(404, "unknown step")
        lang = n["target"].get("language", "zh-Hans")
        if form.get("Digits", "").strip() != "1":
            return _twiml(_say(t("voice.not_acknowledged", lang), lang))
        who = f"{n['recipient']} ({n['to_number']})"
        if await first_application(conn, f"gather:{call_sid}") and await acknowledge(
                conn, n["incident_id"], who, "voice_keypress", notification_id=n["id"],
                call_sid=call_sid):
            return _twiml(_say(t("voice.thanks", lang), lang))
    return _twiml(_say(t("voice.already", lang, who=n["acknowledged_by"] or ""), lang))


@router.post("/status")
async def status_callback(request: Request, step: str | None = None) -> Response:
    """Call and SMS status from Twilio. A call that ended without a keypress (no answer, busy,
    failed, an answering machine, or hung up) ends its wait: the next step is due now."""
    form = await verified_form(request)
    sid = _sid(form, "CallSid", "MessageSid")
    status = form.get("CallStatus") or form.get("MessageStatus") or ""
    answered_by = form.get("AnsweredBy") or None
    async with request.app.state.pool.connection() as conn:
        n = await _notification(conn, step)
        if n is None:
            raise HTTPException(404, "unknown step")
        if not await first_application(conn, f"status:{sid}:{status}"):
            return Response(status_code=204)  # applied already: a replay changes nothing
        await conn.execute(
            "UPDATE notifications SET provider_status = %s,"
            " answered_by = coalesce(%s, answered_by), provider_sid = coalesce(provider_sid, %s),"
            " updated_at = now() WHERE id = %s",
            (status, answered_by, form.get("CallSid") or form.get("MessageSid"), n["id"]),
        )
        entry = "call_status" if n["channel"] == "voice" else "sms_status"
        await timeline(conn, n["incident_id"], entry, name=n["recipient"], phone=n["to_number"],
                       status=status, answered_by=answered_by,
                       error_code=form.get("ErrorCode"))
        machine = bool(answered_by and not answered_by.startswith("human")
                       and answered_by != "unknown")
        ended = status in CALL_NOT_ANSWERED or status == "completed" or machine
        if n["channel"] == "voice" and ended and n["incident_status"] in ("open", "notifying"):
            # Everything up to and including the next call happens now: nobody took it, so
            # the next person is called at once (an SMS rung in between goes out with it).
            # Only the next step has a due time; the later ones get theirs from wait_s when
            # the step before them finishes, so their waits go to zero.
            upto = {"i": n["incident_id"], "s": n["seq"]}
            span = (" incident_id = %(i)s AND status = 'pending' AND seq > %(s)s AND seq <="
                    " coalesce((SELECT min(seq) FROM escalation_steps WHERE incident_id = %(i)s"
                    " AND seq > %(s)s AND action = 'call'), %(s)s + 1)")
            await conn.execute("UPDATE escalation_steps SET wait_s = 0 WHERE" + span, upto)
            pulled = await conn.execute(
                "UPDATE escalation_steps SET due_at = now() WHERE due_at > now() AND" + span,
                upto)
            await timeline(conn, n["incident_id"], "call_not_acknowledged", name=n["recipient"],
                           status=status, answered_by=answered_by,
                           next_step_now=pulled.rowcount > 0)
            if pulled.rowcount:
                await conn.execute("SELECT pg_notify('escalation_due', %s)",
                                   (str(n["incident_id"]),))
        if status in ("failed", "undelivered"):
            await alarm_if_all_channels_failed(conn, n["incident_id"])
    return Response(status_code=204)


# Only an incident that notified this very number, recently: a reply can never reach an
# incident its sender was not told about.
_FIND_BY_PHONE = """
SELECT i.id AS incident_id, e.name AS elder, n.recipient AS name
FROM notifications n JOIN incidents i ON i.id = n.incident_id JOIN elders e ON e.id = i.elder_id
WHERE n.to_number = %(phone)s AND i.status IN ('open', 'notifying')
  AND n.created_at > now() - make_interval(secs => %(window)s)
ORDER BY n.created_at DESC LIMIT 1
"""


@router.post("/sms/inbound")
async def sms_inbound(request: Request) -> Response:
    """An SMS reply: "1", "好" or "收到" from a number we notified takes responsibility for the
    open incident that most recently notified it, within `dispatcher_sms_reply_window_s`.
    Each MessageSid is applied once."""
    form = await verified_form(request)
    settings: Settings = request.app.state.settings
    lang = settings.language
    message_sid = _sid(form, "MessageSid")
    phone, body = form.get("From", ""), form.get("Body", "")
    if not is_ack_reply(body):
        return _twiml(f"<Message>{escape(t('sms.reply_help', lang))}</Message>")
    async with request.app.state.pool.connection() as conn:
        if not await first_application(conn, f"sms:{message_sid}"):
            log.warning("sms reply applied already; ignored", message_sid=message_sid,
                        phone=mask_phone(phone))
            return _twiml("")  # a replay (or Twilio's retry): no effect, no second answer
        match = await (await conn.execute(_FIND_BY_PHONE, {
            "phone": phone, "window": settings.dispatcher_sms_reply_window_s})).fetchone()
        if match is None:
            log.info("sms reply without an open incident", phone=mask_phone(phone))
            return _twiml(f"<Message>{escape(t('sms.no_open_incident', lang))}</Message>")
        done = await acknowledge(conn, match["incident_id"], f"{match['name']} ({phone})",
                                 "sms_reply", message_sid=message_sid, body=body)
    key = "sms.ack_thanks" if done else "sms.no_open_incident"
    return _twiml(f"<Message>{escape(t(key, lang, elder=match['elder']))}</Message>")
