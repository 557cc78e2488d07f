-- OAuth clients as operators register them (`reauth client add`, DESIGN.md
-- O1–O4), and server-wide settings. Lists are space separated (scope tokens
-- and URIs contain no spaces).
ALTER TABLE clients ADD COLUMN public        BOOLEAN NOT NULL DEFAULT FALSE;  -- token_endpoint_auth_method=none; secret_mac is ''
ALTER TABLE clients ADD COLUMN grant_types   TEXT NOT NULL DEFAULT 'password refresh_token';
ALTER TABLE clients ADD COLUMN scopes        TEXT NOT NULL DEFAULT '';        -- the scopes it may ask for
ALTER TABLE clients ADD COLUMN default_scope TEXT NOT NULL DEFAULT '';        -- granted when it asks for none
ALTER TABLE clients ADD COLUMN redirect_uris TEXT NOT NULL DEFAULT '';
ALTER TABLE clients ADD COLUMN introspection BOOLEAN NOT NULL DEFAULT FALSE;  -- a resource server: may introspect any token

-- `key_fingerprint`: the keyed hash of the key file's long-lived keys the
-- database was set up with; a server with other keys refuses to start.
CREATE TABLE settings (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
