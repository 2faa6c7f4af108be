-- SVID revocation (signet svid revoke). svid_bindings learns each SVID's
-- serial (lowercase hex, X509-SVIDs only; '' for JWT-SVIDs and rows
-- written before this migration) and SPIFFE ID, so a revocation can check
-- that the serial was issued and find every SVID of an ID.
-- svid_revocations holds the revocations in force: one row per revoked
-- X509-SVID serial, and one with serial '' per SPIFFE ID whose JWT-SVIDs
-- issued at or before revoked_at are refused. Rows are pruned once the SVIDs
-- they name have expired (expires_at). revision is the store revision of the
-- revocation. Times are unix nanoseconds UTC.

-- +goose Up
ALTER TABLE svid_bindings ADD COLUMN serial TEXT NOT NULL DEFAULT '';
ALTER TABLE svid_bindings ADD COLUMN spiffe_id TEXT NOT NULL DEFAULT '';
CREATE INDEX svid_bindings_serial ON svid_bindings (serial);
CREATE INDEX svid_bindings_spiffe_id ON svid_bindings (spiffe_id);
CREATE TABLE svid_revocations (
    serial     TEXT COLLATE "C" NOT NULL,
    spiffe_id  TEXT COLLATE "C" NOT NULL,
    revoked_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    revision   BIGINT NOT NULL,
    PRIMARY KEY (serial, spiffe_id)
);
CREATE INDEX svid_revocations_expires ON svid_revocations (expires_at);

-- +goose Down
DROP TABLE svid_revocations;
DROP INDEX svid_bindings_spiffe_id;
DROP INDEX svid_bindings_serial;
ALTER TABLE svid_bindings DROP COLUMN spiffe_id;
ALTER TABLE svid_bindings DROP COLUMN serial;
