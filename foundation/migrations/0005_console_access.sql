-- Console access control: staff login accounts, server-side sessions, the audit log, and who
-- claimed an incident on the console.
CREATE TABLE staff_accounts (
    username            text PRIMARY KEY,
    staff_id            text REFERENCES staff(id),
    display_name        text NOT NULL,
    role                text NOT NULL
        CHECK (role IN ('district_admin', 'street_supervisor', 'duty_staff')),
    -- Scope: a duty staff member's community, a street supervisor's (district, street).
    community_id        text REFERENCES communities(id),
    district            text NOT NULL DEFAULT '',
    street              text NOT NULL DEFAULT '',
    password_hash       text NOT NULL,           -- argon2id, PHC string
    failed_logins       int NOT NULL DEFAULT 0,  -- failures in the current window
    first_failed_at     timestamptz,
    locked_until        timestamptz,
    active              boolean NOT NULL DEFAULT true,
    created_at          timestamptz NOT NULL DEFAULT now(),
    CHECK (role <> 'duty_staff' OR community_id IS NOT NULL),
    CHECK (role <> 'street_supervisor' OR street <> '')
);

-- Only the SHA-256 of the session token is stored: a database leak does not hand out sessions.
CREATE TABLE staff_sessions (
    token_hash      text PRIMARY KEY,
    username        text NOT NULL REFERENCES staff_accounts(username) ON DELETE CASCADE,
    csrf_token      text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    last_seen       timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz NOT NULL
);
CREATE INDEX staff_sessions_user ON staff_sessions (username);

CREATE TABLE audit_log (
    id              bigserial PRIMARY KEY,
    at              timestamptz NOT NULL DEFAULT now(),
    username        text NOT NULL,
    role            text NOT NULL,
    action          text NOT NULL,   -- login, login_failed, view, claim, acknowledge, resolve, ...
    object_type     text NOT NULL DEFAULT '',
    object_id       text NOT NULL DEFAULT '',
    community_id    text,
    client          text NOT NULL DEFAULT '',
    detail          jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_object ON audit_log (object_type, object_id, id);
CREATE INDEX audit_log_user ON audit_log (username, id);

ALTER TABLE incidents ADD COLUMN claimed_by text;
ALTER TABLE incidents ADD COLUMN claimed_at timestamptz;
