-- The credential broker: the KEK check value, sealed static secrets and
-- leases (every brokered credential). Sealed columns hold AES-256-GCM
-- ciphertexts made by internal/broker/seal; the store never sees a
-- plaintext. Times are unix nanoseconds UTC.

-- +goose Up
CREATE TABLE broker_kek (
    id          INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    key_id      TEXT    NOT NULL,
    check_value BLOB    NOT NULL,
    created_at  INTEGER NOT NULL
) STRICT;

CREATE TABLE broker_secrets (
    name       TEXT    NOT NULL,
    version    INTEGER NOT NULL,
    key_id     TEXT    NOT NULL,
    sealed     BLOB    NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (name, version)
) STRICT;

CREATE TABLE broker_leases (
    id             TEXT    NOT NULL PRIMARY KEY,
    credential     TEXT    NOT NULL,
    provider       TEXT    NOT NULL,
    subject        TEXT    NOT NULL,
    node           TEXT    NOT NULL,
    context        TEXT    NOT NULL,
    secret_version INTEGER NOT NULL,
    state          TEXT    NOT NULL,
    issued_at      INTEGER NOT NULL,
    expires_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL,
    revoke_data    BLOB,
    reason         TEXT    NOT NULL
) STRICT;
CREATE INDEX broker_leases_state ON broker_leases (state, expires_at);
CREATE INDEX broker_leases_subject ON broker_leases (subject);
CREATE INDEX broker_leases_credential ON broker_leases (credential);

-- +goose Down
DROP TABLE broker_leases;
DROP TABLE broker_secrets;
DROP TABLE broker_kek;
