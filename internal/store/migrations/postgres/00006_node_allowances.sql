-- Node identities an operator allowed by hand for attestation methods that
-- need it: a TPM without a manufacturer EK certificate is admitted when its
-- EK hash is listed (signet agent allow --tpm-ek-hash). Times are unix
-- nanoseconds UTC.

-- +goose Up
CREATE TABLE node_allowances (
    attestation_type TEXT    NOT NULL,
    value            TEXT    NOT NULL,
    created_at       BIGINT NOT NULL,
    PRIMARY KEY (attestation_type, value)
);

-- +goose Down
DROP TABLE node_allowances;
