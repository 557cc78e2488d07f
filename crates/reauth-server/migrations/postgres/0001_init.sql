-- reauth-server schema (PostgreSQL). Times are milliseconds since the Unix epoch.
CREATE TABLE users (
    username      TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,          -- argon2id PHC string
    created_at    BIGINT NOT NULL
);

CREATE TABLE clients (
    client_id  TEXT PRIMARY KEY,
    secret_mac TEXT NOT NULL,             -- hex HMAC-SHA256(pepper, secret)
    created_at BIGINT NOT NULL
);

-- One row per session. The refresh token of generation n is
-- MAC(key, id, n): nothing secret is stored.
CREATE TABLE families (
    id             TEXT PRIMARY KEY,
    subject        TEXT NOT NULL,
    client_id      TEXT,
    scope          TEXT,
    generation     BIGINT NOT NULL,
    created_at     BIGINT NOT NULL,
    last_used_at   BIGINT NOT NULL,
    rotated_at     BIGINT,                -- when generation-1 was rotated into generation
    revoked_at     BIGINT,
    revoked_reason TEXT
);
CREATE INDEX families_subject ON families (subject);
CREATE INDEX families_revoked_at ON families (revoked_at) WHERE revoked_at IS NOT NULL;

CREATE TABLE audit_events (
    id        BIGSERIAL PRIMARY KEY,
    at        BIGINT NOT NULL,
    kind      TEXT NOT NULL,
    family_id TEXT,
    subject   TEXT,
    detail    TEXT
);
CREATE INDEX audit_events_family ON audit_events (family_id);
