"""Which numbers can receive an SMS. Landlines are called, never texted."""

from __future__ import annotations

import phonenumbers
from phonenumbers import PhoneNumberType

# FIXED_LINE_OR_MOBILE: countries (US, CA) whose plan cannot tell; Twilio reports the failure.
_SMS_CAPABLE = frozenset({
    PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE, PhoneNumberType.PAGER,
})


def can_receive_sms(phone: str, region: str = "CN") -> bool:
    """True when `phone` (E.164, or national in `region`) is a mobile-capable number."""
    try:
        number = phonenumbers.parse(phone, region)
    except phonenumbers.NumberParseException:
        return False
    return phonenumbers.number_type(number) in _SMS_CAPABLE
