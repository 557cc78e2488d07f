-- reauth-server schema (SQLite). Times are milliseconds since the Unix epoch.
CREATE TABLE users (
    username      TEXT PRIMARY KEY NOT NULL,
    password_hash TEXT NOT NULL,          -- argon2id PHC string
    created_at    INTEGER NOT NULL
);

CREATE TABLE clients (
    client_id  TEXT PRIMARY KEY NOT NULL,
    secret_mac TEXT NOT NULL,             -- hex HMAC-SHA256(pepper, secret)
    created_at INTEGER NOT NULL
);

-- One row per session. The refresh token of generation n is
-- MAC(key, id, n): nothing secret is stored.
CREATE TABLE families (
    id             TEXT PRIMARY KEY NOT NULL,
    subject        TEXT NOT NULL,
    client_id      TEXT,
    scope          TEXT,
    generation     INTEGER NOT NULL,
    created_at     INTEGER NOT NULL,
    last_used_at   INTEGER NOT NULL,
    rotated_at     INTEGER,               -- when generation-1 was rotated into generation
    revoked_at     INTEGER,
    revoked_reason TEXT
);
CREATE INDEX families_subject ON families (subject);
CREATE INDEX families_revoked_at ON families (revoked_at) WHERE revoked_at IS NOT NULL;

CREATE TABLE audit_events (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    at        INTEGER NOT NULL,
    kind      TEXT NOT NULL,
    family_id TEXT,
    subject   TEXT,
    detail    TEXT
);
CREATE INDEX audit_events_family ON audit_events (family_id);
