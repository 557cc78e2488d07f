-- The one clock every replica judges grace windows and session lifetimes by
-- (DESIGN.md S16): milliseconds since the Unix epoch, from the database.
CREATE FUNCTION reauth_now_ms() RETURNS BIGINT LANGUAGE sql VOLATILE AS
$$ SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint $$;
