-- Login throttling. Wrong passwords are counted per (account, address), per address and per
-- account, so one address guessing cannot lock duty staff out from their own desk:
--   (username, address)  5 in 15 min  -> that account from that address, 423, for 15 min
--   ('', address)        20 in 15 min -> any login from that address, 429, for 15 min
--   (username, '')       50 in 15 min -> that account from anywhere, 423, for 15 min
CREATE TABLE login_failures (
    username        text NOT NULL,
    address         text NOT NULL,
    failures        int NOT NULL DEFAULT 0,
    first_failed_at timestamptz NOT NULL DEFAULT now(),
    locked_until    timestamptz,
    PRIMARY KEY (username, address),
    CHECK (username <> '' OR address <> '')
);
CREATE INDEX login_failures_age ON login_failures (first_failed_at);

ALTER TABLE staff_accounts DROP COLUMN failed_logins;
ALTER TABLE staff_accounts DROP COLUMN first_failed_at;
ALTER TABLE staff_accounts DROP COLUMN locked_until;
