-- Authorities name their private key in the owning server's key manager
-- (key_id; empty on rows written before this migration, whose key is
-- "<kind>-<id>"), and X.509 authorities signed by an upstream authority
-- carry the upstream intermediates above their certificate
-- (upstream_chain) and the upstream roots (upstream_roots), each as
-- concatenated DER.

-- +goose Up
ALTER TABLE authorities ADD COLUMN key_id TEXT NOT NULL DEFAULT '';
ALTER TABLE authorities ADD COLUMN upstream_chain BYTEA;
ALTER TABLE authorities ADD COLUMN upstream_roots BYTEA;

-- +goose Down
ALTER TABLE authorities DROP COLUMN upstream_roots;
ALTER TABLE authorities DROP COLUMN upstream_chain;
ALTER TABLE authorities DROP COLUMN key_id;
