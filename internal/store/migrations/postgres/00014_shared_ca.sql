-- One CA for every replica of the trust domain (key manager "sealed"):
-- the authorities' private keys sealed in the store, the check value of
-- the KEK they are sealed under, and the rotation lease that lets exactly
-- one replica perform each rotation step. Sealed columns hold AES-256-GCM
-- ciphertexts made by internal/broker/seal; the store never sees a
-- plaintext key. Times are unix nanoseconds UTC.

-- +goose Up
CREATE TABLE ca_kek (
    id          SMALLINT NOT NULL PRIMARY KEY CHECK (id = 1),
    key_id      TEXT     NOT NULL,
    check_value BYTEA    NOT NULL,
    created_at  BIGINT   NOT NULL
);

CREATE TABLE ca_keys (
    id         TEXT   NOT NULL PRIMARY KEY,
    kek_id     TEXT   NOT NULL,
    sealed     BYTEA  NOT NULL,
    created_at BIGINT NOT NULL
);

-- holder is the replica that may rotate until expires_at; '' and 0: free.
CREATE TABLE ca_rotation_lease (
    id         SMALLINT NOT NULL PRIMARY KEY CHECK (id = 1),
    holder     TEXT     NOT NULL,
    expires_at BIGINT   NOT NULL
);
INSERT INTO ca_rotation_lease (id, holder, expires_at) VALUES (1, '', 0);

-- +goose Down
DROP TABLE ca_rotation_lease;
DROP TABLE ca_keys;
DROP TABLE ca_kek;
