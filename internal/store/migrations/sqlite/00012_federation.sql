-- SPIFFE federation relationships: a remote trust domain, where and how its
-- bundle is fetched, and the last good bundle (SPIFFE bundle JSON) with its
-- sequence. last_refresh_at is the last successful fetch, last_attempt_at
-- and last_error the last try, next_refresh_at when the next fetch is due
-- (a replica claims a due relationship by moving it forward, so with
-- several replicas one fetches). Times are unix nanoseconds UTC; 0 = never.

-- +goose Up
CREATE TABLE federations (
    trust_domain        TEXT    NOT NULL PRIMARY KEY,
    bundle_endpoint_url TEXT    NOT NULL,
    profile             TEXT    NOT NULL,
    endpoint_spiffe_id  TEXT    NOT NULL,
    bundle              BLOB,
    bundle_sequence     INTEGER NOT NULL,
    last_refresh_at     INTEGER NOT NULL,
    last_attempt_at     INTEGER NOT NULL,
    last_error          TEXT    NOT NULL,
    failures            INTEGER NOT NULL,
    next_refresh_at     INTEGER NOT NULL,
    created_at          INTEGER NOT NULL
) STRICT;

-- +goose Down
DROP TABLE federations;
