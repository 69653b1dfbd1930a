"""Who may post batches to the HTTP gateway: per-gateway secrets, used either as an API key
(`Authorization: Bearer <secret>`) or to sign the body (HMAC-SHA256 over "<timestamp>.<body>")."""

from __future__ import annotations

import hashlib
import hmac

MAX_CLOCK_SKEW_S = 300  # a signed request older or newer than this is refused (replay guard)


def parse_keys(setting: str) -> dict[str, str]:
    """`gateway_id=secret,gateway_id=secret` (the `ingest_gateway_keys` setting) -> a mapping."""
    keys: dict[str, str] = {}
    for pair in setting.split(","):
        gateway, sep, secret = pair.partition("=")
        if sep and gateway.strip() and secret.strip():
            keys[gateway.strip()] = secret.strip()
    return keys


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """The value a gateway sends in `X-Eldercare-Signature`: `sha256=<hex>`."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def check_api_key(secret: str, authorization: str | None) -> bool:
    """True when the header is `Bearer <secret>`."""
    if not authorization or not authorization.startswith("Bearer "):
        return False
    return hmac.compare_digest(authorization[len("Bearer "):].encode(), secret.encode())


def check_signature(
    secret: str, timestamp: str | None, sent: str | None, body: bytes, now: float,
) -> str | None:
    """None when the signature is valid and fresh, otherwise why not."""
    if not timestamp or not sent:
        return "missing X-Eldercare-Timestamp or X-Eldercare-Signature"
    try:
        ts = float(timestamp)
    except ValueError:
        return "X-Eldercare-Timestamp is not epoch seconds"
    if abs(now - ts) > MAX_CLOCK_SKEW_S:
        return f"timestamp is more than {MAX_CLOCK_SKEW_S}s away from the server clock"
    if not hmac.compare_digest(sent.encode(), signature(secret, timestamp, body).encode()):
        return "signature does not match the body"
    return None
