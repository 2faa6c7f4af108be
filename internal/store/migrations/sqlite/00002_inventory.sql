-- Inventory: static-credential findings reported by `signet scan --report`
-- and stored coverage reports. Times are unix nanoseconds UTC (0 = unset).

-- +goose Up
-- A finding is identified by the keyed fingerprint of its secret: the same
-- secret seen again is the same row; a rotated secret is a new one. Only a
-- redacted preview is stored, never the secret. status is open, gone (a
-- rescan of every place it was seen no longer found it) or resolved (by an
-- operator, with resolution saying why).
CREATE TABLE findings (
    fingerprint   TEXT    NOT NULL PRIMARY KEY,
    rule_id       TEXT    NOT NULL,
    detector      TEXT    NOT NULL,
    kind          TEXT    NOT NULL,
    severity      TEXT    NOT NULL,
    description   TEXT    NOT NULL,
    preview       TEXT    NOT NULL,
    details       TEXT    NOT NULL,
    labels        TEXT    NOT NULL,
    status        TEXT    NOT NULL,
    resolution    TEXT    NOT NULL,
    first_seen_at INTEGER NOT NULL,
    last_seen_at  INTEGER NOT NULL,
    closed_at     INTEGER NOT NULL
) STRICT;
CREATE INDEX findings_status ON findings (status);

-- Every place a finding was seen, per reporting host. commit_sha is empty
-- outside git history; gone_at is set when a rescan covering the location
-- no longer found the secret there.
CREATE TABLE finding_locations (
    fingerprint   TEXT    NOT NULL,
    host          TEXT    NOT NULL,
    path          TEXT    NOT NULL,
    line          INTEGER NOT NULL,
    commit_sha    TEXT    NOT NULL,
    column_no     INTEGER NOT NULL,
    end_line      INTEGER NOT NULL,
    author        TEXT    NOT NULL,
    email         TEXT    NOT NULL,
    committed_at  INTEGER NOT NULL,
    first_seen_at INTEGER NOT NULL,
    last_seen_at  INTEGER NOT NULL,
    gone_at       INTEGER NOT NULL,
    PRIMARY KEY (fingerprint, host, path, line, commit_sha)
) STRICT;
CREATE INDEX finding_locations_host ON finding_locations (host, gone_at);

-- One row per `signet coverage` run: dimension is the grouping
-- (environment, owner, path) and report the computed report as JSON.
CREATE TABLE coverage_reports (
    id         INTEGER PRIMARY KEY,
    created_at INTEGER NOT NULL,
    dimension  TEXT    NOT NULL,
    report     TEXT    NOT NULL
) STRICT;
CREATE INDEX coverage_reports_dimension ON coverage_reports (dimension, id);

-- +goose Down
DROP TABLE coverage_reports;
DROP TABLE finding_locations;
DROP TABLE findings;
