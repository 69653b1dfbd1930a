-- A family member's live page for one incident: a short signed link in every SMS to a contact.
-- The token is an HMAC of (incident, contact) with the platform's link secret, so a retried SMS
-- carries the same link; only its SHA-256 is stored. The link dies 24 h after resolution.
CREATE TABLE IF NOT EXISTS platform_secrets (
    name        text PRIMARY KEY,
    value       bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS family_links (
    token_hash        bytea PRIMARY KEY,
    incident_id       uuid NOT NULL REFERENCES incidents(id) ON DELETE CASCADE,
    contact_priority  int NOT NULL,
    contact_name      text NOT NULL DEFAULT '',
    language          text NOT NULL DEFAULT 'zh-Hans',
    created_at        timestamptz NOT NULL DEFAULT now(),
    UNIQUE (incident_id, contact_priority)
);
