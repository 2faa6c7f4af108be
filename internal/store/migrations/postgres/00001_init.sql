-- Signet store schema, PostgreSQL. Times are unix nanoseconds UTC (0 = unset),
-- durations nanoseconds, lists and maps JSON text. Ordered text keys use the
-- "C" collation so that ordering and cursors match SQLite (byte order).

-- +goose Up
-- revision is the single-row global state revision. Every write transaction
-- starts by updating (or SELECT … FOR UPDATE-ing) it, which serializes
-- writers across replicas: revision order is commit order. pruned_through is
-- the highest revision whose entry tombstones may have been pruned.
CREATE TABLE revision (
    id             INTEGER PRIMARY KEY CHECK (id = 1),
    value          BIGINT  NOT NULL,
    pruned_through BIGINT  NOT NULL
);
INSERT INTO revision (id, value, pruned_through) VALUES (1, 0, 0);

-- selectors_hash is SHA-256 over the canonical selector set: at most one
-- entry per SPIFFE ID, parent and selector set. The unique index also serves
-- look-ups by SPIFFE ID.
CREATE TABLE entries (
    id              TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    spiffe_id       TEXT COLLATE "C" NOT NULL,
    parent_id       TEXT COLLATE "C" NOT NULL,
    selectors       TEXT    NOT NULL,
    selectors_hash  BYTEA   NOT NULL,
    x509_ttl        BIGINT  NOT NULL,
    jwt_ttl         BIGINT  NOT NULL,
    dns_names       TEXT    NOT NULL,
    admin           BOOLEAN NOT NULL,
    downstream      BOOLEAN NOT NULL,
    federates_with  TEXT    NOT NULL,
    expires_at      BIGINT  NOT NULL,
    hint            TEXT    NOT NULL,
    labels          TEXT    NOT NULL,
    revision        BIGINT  NOT NULL,
    created_at      BIGINT  NOT NULL,
    updated_at      BIGINT  NOT NULL,
    first_issued_at BIGINT  NOT NULL DEFAULT 0,
    last_issued_at  BIGINT  NOT NULL DEFAULT 0,
    UNIQUE (spiffe_id, parent_id, selectors_hash)
);
CREATE INDEX entries_parent_id ON entries (parent_id);
CREATE INDEX entries_revision ON entries (revision);

-- entry_selectors indexes entries by selector for ListEntries filters; the
-- JSON column in entries stays the source of truth. The store keeps it in
-- step with entries itself (no foreign key: checking one per row halves bulk
-- insert speed).
CREATE TABLE entry_selectors (
    type     TEXT NOT NULL,
    value    TEXT NOT NULL,
    entry_id TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (type, value, entry_id)
);

CREATE TABLE entry_tombstones (
    revision   BIGINT NOT NULL,
    entry_id   TEXT COLLATE "C" NOT NULL,
    deleted_at BIGINT NOT NULL,
    PRIMARY KEY (revision, entry_id)
);
CREATE INDEX entry_tombstones_deleted_at ON entry_tombstones (deleted_at);

CREATE TABLE nodes (
    spiffe_id        TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    attestation_type TEXT    NOT NULL,
    selectors        TEXT    NOT NULL,
    serial_number    TEXT    NOT NULL,
    -- serial of a renewed SVID the node has not presented yet; until it
    -- does, serial_number stays valid (a lost renewal reply strands no one)
    new_serial_number TEXT   NOT NULL DEFAULT '',
    cert_not_after   BIGINT  NOT NULL,
    banned           BOOLEAN NOT NULL,
    labels           TEXT    NOT NULL,
    revision         BIGINT  NOT NULL,
    created_at       BIGINT  NOT NULL,
    last_seen_at     BIGINT  NOT NULL
);

-- Only the SHA-256 of a join token is stored.
CREATE TABLE join_tokens (
    hash       BYTEA  NOT NULL PRIMARY KEY,
    spiffe_id  TEXT   NOT NULL,
    expires_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX join_tokens_expires_at ON join_tokens (expires_at);

CREATE TABLE authorities (
    kind        TEXT COLLATE "C" NOT NULL,
    id          TEXT COLLATE "C" NOT NULL,
    state       TEXT   NOT NULL,
    server_id   TEXT   NOT NULL,
    certificate BYTEA,
    public_key  BYTEA  NOT NULL,
    not_before  BIGINT NOT NULL,
    not_after   BIGINT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    revision    BIGINT NOT NULL,
    PRIMARY KEY (kind, id)
);

-- audit_log is hash-chained: hash = SHA-256(seq, time, actor, action,
-- object, detail, prev_hash); see audit.go.
CREATE TABLE audit_log (
    seq       BIGINT NOT NULL PRIMARY KEY,
    time      BIGINT NOT NULL,
    actor     TEXT   NOT NULL,
    action    TEXT   NOT NULL,
    object    TEXT   NOT NULL,
    detail    TEXT   NOT NULL,
    prev_hash BYTEA  NOT NULL,
    hash      BYTEA  NOT NULL
);
CREATE INDEX audit_log_time ON audit_log (time);

-- +goose Down
DROP TABLE audit_log;
DROP TABLE authorities;
DROP TABLE join_tokens;
DROP TABLE nodes;
DROP TABLE entry_tombstones;
DROP TABLE entry_selectors;
DROP TABLE entries;
DROP TABLE revision;
