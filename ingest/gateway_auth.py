"""Who may post batches to the HTTP gateway: per-gateway secrets, used either as an API key
(`Authorization: Bearer <secret>`) or to sign the body (HMAC-SHA256 over "<timestamp>.<body>"),
and what each gateway may post for: its communities and, optionally, device-id prefixes. A leaked
vendor key can then never forge events for another vendor's elders."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

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


ANY_COMMUNITY = "*"


@dataclass(frozen=True)
class GatewayScope:
    """The communities a gateway may post for (`*`: all), and the prefixes its device ids
    must start with (none: any device of those communities)."""

    communities: frozenset[str]
    device_prefixes: tuple[str, ...] = ()

    def refuses(self, community_id: str, device_id: str) -> str | None:
        """None when an item for this community and device is in scope, otherwise why not."""
        if ANY_COMMUNITY not in self.communities and community_id not in self.communities:
            return f"community {community_id!r} is outside this gateway's scope"
        if self.device_prefixes and not device_id.startswith(self.device_prefixes):
            return f"device {device_id!r} does not start with one of this gateway's prefixes"
        return None


def parse_scopes(setting: str) -> dict[str, GatewayScope]:
    """`gateway=community|community[/prefix|prefix],...` (the `ingest_gateway_scopes`
    setting) -> a mapping. A gateway left out may post for nothing."""
    scopes: dict[str, GatewayScope] = {}
    for entry in setting.split(","):
        gateway, sep, rule = entry.partition("=")
        if not (sep and gateway.strip() and rule.strip()):
            continue
        communities, _, prefixes = rule.partition("/")
        scopes[gateway.strip()] = GatewayScope(
            frozenset(c.strip() for c in communities.split("|") if c.strip()),
            tuple(x.strip() for x in prefixes.split("|") if x.strip()))
    return scopes


def scope_refusal(scope: GatewayScope | None, community_id: str, device_id: str) -> str | None:
    """Why a gateway with `scope` (None: no scope configured) may not post this item."""
    if scope is None:
        return "this gateway has no scope (ELDERCARE_INGEST_GATEWAY_SCOPES): it may post nothing"
    return scope.refuses(community_id, device_id)
