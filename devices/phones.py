"""Phone numbers: parsed to E.164 with `phonenumbers`, and whether they can receive SMS."""

from __future__ import annotations

import phonenumbers
from phonenumbers import PhoneNumberType

from devices.reasons import reason

DEFAULT_REGION = "CN"  # ledgers often write mainland numbers without +86
_SMS_TYPES = {PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE}


def parse(raw: str, region: str = DEFAULT_REGION) -> tuple[str, bool]:
    """(E.164 number, can receive SMS); raises a ValueError with a code (devices.reasons)
    saying why a number is not valid."""
    text = raw.strip()
    if not text:
        raise reason("phone_empty", "phone number is empty")
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException as exc:
        raise reason("phone_not_a_number", "'{raw}' is not a phone number ({why})",
                     raw=raw, why=str(exc)) from None
    if not phonenumbers.is_valid_number(number):
        raise reason("phone_invalid", "'{raw}' is not a valid number in its country",
                     raw=raw)
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return e164, phonenumbers.number_type(number) in _SMS_TYPES


def e164(raw: str) -> str:
    """The E.164 form of a valid number; raises ValueError otherwise."""
    return parse(raw)[0]
