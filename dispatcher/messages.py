"""What families, elders and staff read and hear, rendered from the locale files, with times in
the community's own time zone."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from xml.sax.saxutils import escape, quoteattr

from dispatcher.roster import DEFAULT_TIME_ZONE, zone
from foundation.i18n import DEFAULT_LANGUAGE, LANGUAGES, catalogue, t

# Text-to-speech voice per message language. Twilio's default <Say> voice is "man", which has no
# Mandarin, and its docs warn that an invalid voice/language pair may fail the <Say>. Each pair
# below is listed in Twilio's text-to-speech voice table (Amazon Polly voices):
# https://www.twilio.com/docs/voice/twiml/say/text-speech  ("Chinese Mandarin, cmn-CN,
# Polly.Zhiyu"; "English (US), en-US, Polly.Joanna"); the Amazon Polly list agrees:
# https://docs.aws.amazon.com/polly/latest/dg/available-voices.html
VOICES: dict[str, tuple[str, str]] = {
    "zh-Hans": ("Polly.Zhiyu", "cmn-CN"),
    "en": ("Polly.Joanna", "en-US"),
}


def say(text: str, lang: str) -> str:
    """A <Say> in the voice documented for `lang` (Chinese for an unknown language)."""
    voice, language = VOICES.get(lang, VOICES[DEFAULT_LANGUAGE])
    return f"<Say voice={quoteattr(voice)} language={quoteattr(language)}>{escape(text)}</Say>"


@dataclass(frozen=True)
class IncidentFacts:
    """The facts a message names: who, what, where, when (in the community's time zone)."""

    elder: str
    address: str
    community: str
    kind: str
    event_time: datetime
    time_zone: str = DEFAULT_TIME_ZONE
    # Where the elder is, in the recipient's language ("在家", or distance, direction and a
    # map link: dispatcher/whereabouts.py); a call gets it without the link.
    where: str = ""
    where_spoken: str = ""

    def when(self, at: datetime, lang: str) -> str:
        """`at` on the community's clock, written the way `lang` writes it."""
        local = at.astimezone(zone(self.time_zone))
        return local.strftime("%m月%d日 %H:%M") if lang == "zh-Hans" else local.strftime(
            "%d %b %H:%M")

    def values(self, lang: str) -> dict[str, str]:
        return {
            "elder": self.elder, "address": self.address, "community": self.community,
            "what": t(f"kind.{self.kind}", lang), "time": self.when(self.event_time, lang),
            "where": self.where or t("where.home", lang),
        }


def _kind_key(base: str, kind: str, lang: str) -> str:
    """`base.kind` when the locale has a sentence for this kind (fire: call 119), else `base`."""
    lang = lang if lang in LANGUAGES else DEFAULT_LANGUAGE
    specific = f"{base}.{kind}"
    return specific if specific in catalogue(lang) or specific in catalogue(
        DEFAULT_LANGUAGE) else base


def family_sms(facts: IncidentFacts, lang: str = "zh-Hans", link: str = "") -> str:
    """The alert for a contact; `link` is their family page (dispatcher/family.py)."""
    text = t(_kind_key("sms.alert", facts.kind, lang), lang, **facts.values(lang))
    return f"{text}{t('sms.family_link', lang, url=link)}" if link else text


def staff_sms(facts: IncidentFacts, lang: str = "zh-Hans") -> str:
    return t(_kind_key("sms.staff", facts.kind, lang), lang, **facts.values(lang))


def realert_sms(facts: IncidentFacts, lang: str = "zh-Hans") -> str:
    """The elder pressed again after someone took responsibility."""
    return t("sms.realert", lang, **facts.values(lang))


def reminder_sms(facts: IncidentFacts, who: str, minutes: int, lang: str = "zh-Hans") -> str:
    """Acknowledged `minutes` ago by `who` and still not resolved."""
    return t("sms.reminder", lang, who=who, minutes=minutes, **facts.values(lang))


def outcome_sms(
    facts: IncidentFacts, outcome: str, who: str, resolved_at: datetime, lang: str = "zh-Hans",
) -> str:
    """What happened, who handled it and when, for a contact who was told of the emergency."""
    return t("sms.outcome", lang, outcome=t(f"outcome.{outcome}", lang), who=who,
             resolved=facts.when(resolved_at, lang), **facts.values(lang))


def voice_twiml(
    facts: IncidentFacts, gather_url: str, lang: str = "zh-Hans", key: str = "voice.alert",
) -> str:
    """TwiML: say what happened twice, then ask for 1 to take responsibility. `key` picks the
    sentence: voice.alert, voice.realert, voice.checkin (the elder's wellbeing call) or a
    kind-specific voice.alert.<kind>."""
    spoken = {**facts.values(lang), "where": facts.where_spoken or t("where.home", lang)}
    text = t(_kind_key(key, facts.kind, lang), lang, **spoken)
    ask = t("voice.checkin_gather" if key == "voice.checkin" else "voice.gather", lang)
    return (
        f'<Response><Gather numDigits="1" timeout="8" action="{escape(gather_url)}" method="POST">'
        f"{say(text, lang)}{say(ask, lang)}</Gather>{say(text, lang)}</Response>"
    )
