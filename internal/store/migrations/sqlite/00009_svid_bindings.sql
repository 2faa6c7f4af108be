-- Which registration entry and which node each workload SVID was signed
-- for, keyed by the SHA-256 of the SVID (the leaf certificate's DER, or
-- the JWT-SVID's compact form), so that the broker judges a caller by the
-- entry and node its presented SVID was issued to rather than by any
-- entry that shares its SPIFFE ID. node_id is empty for SVIDs issued
-- without a node (CI jobs at the token endpoint). Kept until the SVID
-- expires. Times are unix nanoseconds UTC.

-- +goose Up
CREATE TABLE svid_bindings (
    digest     TEXT    NOT NULL PRIMARY KEY,
    entry_id   TEXT    NOT NULL,
    node_id    TEXT    NOT NULL,
    expires_at INTEGER  NOT NULL
) STRICT;
CREATE INDEX svid_bindings_expires ON svid_bindings (expires_at);

-- +goose Down
DROP TABLE svid_bindings;
