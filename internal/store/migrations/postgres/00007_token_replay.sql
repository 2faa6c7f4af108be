-- Tokens from external OIDC issuers (CI jobs) that were exchanged at the
-- token endpoint, so each is accepted once across every replica: the
-- issuer's URL and the token's jti (or, without one, its SHA-256), kept
-- until the token expires. Times are unix nanoseconds UTC.

-- +goose Up
CREATE TABLE token_replay (
    issuer     TEXT    NOT NULL,
    token_id   TEXT    NOT NULL,
    expires_at BIGINT  NOT NULL,
    PRIMARY KEY (issuer, token_id)
);
CREATE INDEX token_replay_expires ON token_replay (expires_at);

-- +goose Down
DROP TABLE token_replay;
