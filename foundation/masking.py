"""What may appear in logs and banners: phone numbers and secrets masked.

`mask_phone` and `mask_url` are for the places that knowingly print a number or a URL; the
`mask_log_event` structlog processor is the safety net for everything else (an exception text
quoting a number, a URL with a password)."""

from __future__ import annotations

import re
from collections.abc import MutableMapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

MASK = "***"
# E.164 numbers, and mainland mobile numbers written without the country code.
_PHONE = re.compile(r"\+\d{7,15}\b|(?<![\d.])1[3-9]\d{9}(?![\d.])")
_URL_PASSWORD = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:/@\s]*):[^@/\s]+@",
                           re.IGNORECASE)
_SECRET_KEYS = ("password", "secret", "token", "authorization", "api_key")


def mask_phone(number: str) -> str:
    """A phone number with only its last four digits shown: `+86*******0001`."""
    text = number.strip()
    if len(text) <= 4:
        return "*" * len(text)
    head = "+" if text.startswith("+") else ""
    return head + "*" * (len(text) - len(head) - 4) + text[-4:]


def mask_url(url: str) -> str:
    """A URL with its password (if any) replaced: `mqtt://user:***@host:1883`."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:{MASK}@{host}"))


def mask_text(text: str) -> str:
    """Free text with every phone number and URL password masked."""
    text = _URL_PASSWORD.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", text)
    return _PHONE.sub(lambda m: mask_phone(m.group()), text)


def mask_log_event(
    _logger: Any, _method: str, event: MutableMapping[str, Any],
) -> MutableMapping[str, Any]:
    """structlog processor: secrets by key name, numbers and URL passwords in every text."""
    for key, value in event.items():
        if any(word in key.lower() for word in _SECRET_KEYS):
            event[key] = MASK
        elif isinstance(value, str):
            event[key] = mask_text(value)
    return event
