"""What families and staff read and hear, rendered from the locale files."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from xml.sax.saxutils import escape
from zoneinfo import ZoneInfo

from eldercare.i18n import t

LOCAL_TZ = ZoneInfo("Asia/Shanghai")


@dataclass(frozen=True)
class IncidentFacts:
    """The facts a message names: who, what, where, when."""

    elder: str
    address: str
    community: str
    kind: str
    event_time: datetime

    def values(self, lang: str) -> dict[str, str]:
        local = self.event_time.astimezone(LOCAL_TZ)
        when = local.strftime("%m月%d日 %H:%M") if lang == "zh-Hans" else local.strftime(
            "%d %b %H:%M"
        )
        return {
            "elder": self.elder, "address": self.address, "community": self.community,
            "what": t(f"kind.{self.kind}", lang), "time": when,
        }


def family_sms(facts: IncidentFacts, lang: str = "zh-Hans") -> str:
    return t("sms.alert", lang, **facts.values(lang))


def staff_sms(facts: IncidentFacts, lang: str = "zh-Hans") -> str:
    return t("sms.staff", lang, **facts.values(lang))


def voice_twiml(facts: IncidentFacts, gather_url: str, lang: str = "zh-Hans") -> str:
    """TwiML: say what happened twice, then ask for 1 to take responsibility."""
    voice_lang = "zh-CN" if lang == "zh-Hans" else "en-US"
    say = escape(t("voice.alert", lang, **facts.values(lang)))
    ask = escape(t("voice.gather", lang))
    return (
        f'<Response><Gather numDigits="1" timeout="8" action="{escape(gather_url)}" method="POST">'
        f'<Say language="{voice_lang}">{say}</Say><Say language="{voice_lang}">{ask}</Say>'
        f'</Gather><Say language="{voice_lang}">{say}</Say></Response>'
    )
