"""Family links: a short signed link per incident and contact to a live page of the response.

The token is HMAC-SHA256(link secret, "incident:priority"), cut to 128 bits and base64url
encoded (22 characters): the same contact always gets the same link for the same incident, so a
retried SMS does not make a second one. Only the token's SHA-256 is stored. The secret is
`ELDERCARE_LINK_SECRET` when set, else one made on first use and kept in the database, so every
process of the platform agrees on it."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from psycopg import AsyncConnection

# A link works while the incident is open and for this long after it is resolved.
AFTER_RESOLUTION = timedelta(hours=24)
TOKEN_CHARS = 22


async def link_secret(conn: AsyncConnection[Any], configured: str = "") -> bytes:
    """The key links are signed with."""
    if configured:
        return configured.encode()
    await conn.execute(
        "INSERT INTO platform_secrets (name, value) VALUES ('family_links', %s)"
        " ON CONFLICT (name) DO NOTHING", (secrets.token_bytes(32),))
    row = await (await conn.execute(
        "SELECT value FROM platform_secrets WHERE name = 'family_links'")).fetchone()
    assert row is not None
    return bytes(row["value"])


def token_for(secret: bytes, incident_id: uuid.UUID | str, priority: int) -> str:
    mac = hmac.new(secret, f"{incident_id}:{priority}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac[:16]).decode().rstrip("=")


def _hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


async def issue(conn: AsyncConnection[Any], secret: bytes, incident_id: uuid.UUID | str,
                priority: int, name: str, language: str) -> str:
    """The token of this contact's link to this incident (recorded the first time)."""
    token = token_for(secret, incident_id, priority)
    await conn.execute(
        "INSERT INTO family_links (token_hash, incident_id, contact_priority, contact_name,"
        " language) VALUES (%s,%s,%s,%s,%s) ON CONFLICT DO NOTHING",
        (_hash(token), str(incident_id), priority, name, language))
    return token


def url(public_base_url: str, token: str) -> str:
    return f"{public_base_url.rstrip('/')}/f/{token}"


@dataclass(frozen=True)
class FamilyLink:
    """Who a valid link belongs to: one contact of one incident."""

    incident_id: str
    priority: int
    name: str
    language: str
    elder_id: str
    community_id: str


async def holder(conn: AsyncConnection[Any], token: str) -> FamilyLink | None:
    """The link's owner, or None for an unknown, malformed or expired token."""
    if len(token) != TOKEN_CHARS or not token.replace("-", "").replace("_", "").isalnum():
        return None
    row = await (await conn.execute(
        "SELECT f.incident_id, f.contact_priority, f.contact_name, f.language, i.elder_id,"
        " i.community_id FROM family_links f JOIN incidents i ON i.id = f.incident_id"
        " WHERE f.token_hash = %s AND (i.resolved_at IS NULL OR i.resolved_at > now() - %s)",
        (_hash(token), AFTER_RESOLUTION))).fetchone()
    if row is None:
        return None
    return FamilyLink(str(row["incident_id"]), int(row["contact_priority"]),
                      row["contact_name"], row["language"], row["elder_id"],
                      row["community_id"])
