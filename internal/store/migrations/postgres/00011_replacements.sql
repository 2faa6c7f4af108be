-- From found to replaced: each finding's risk score (computed when a scan
-- is reported, so that lists sort by it), its normalized environment and
-- owner (so that coverage groups findings in SQL), and the link from a
-- finding to the brokered credential that replaces it. Times are unix
-- nanoseconds UTC (0 = unset).

-- +goose Up
ALTER TABLE findings ADD COLUMN risk BIGINT NOT NULL DEFAULT 0;
-- JSON list of risk.Factor: why the finding scores what it does.
ALTER TABLE findings ADD COLUMN risk_factors TEXT NOT NULL DEFAULT '[]';
ALTER TABLE findings ADD COLUMN environment TEXT NOT NULL DEFAULT 'unknown';
ALTER TABLE findings ADD COLUMN owner TEXT NOT NULL DEFAULT 'unknown';
CREATE INDEX findings_status_risk ON findings (status, risk DESC, fingerprint);
CREATE INDEX findings_environment ON findings (environment, status);
CREATE INDEX findings_owner ON findings (owner, status);

-- A finding linked to the credential that replaces it (`signet inventory
-- replace`). The finding becomes replaced (findings.status) only when a
-- complete rescan no longer sees the secret and the credential has had a
-- lease for a workload in the finding's environment since linked_at;
-- replaced_at records when both first held.
CREATE TABLE finding_replacements (
    fingerprint TEXT    NOT NULL PRIMARY KEY,
    credential  TEXT    NOT NULL,
    note        TEXT    NOT NULL,
    linked_by   TEXT    NOT NULL,
    linked_at   BIGINT NOT NULL,
    replaced_at BIGINT NOT NULL
);
CREATE INDEX finding_replacements_pending ON finding_replacements (replaced_at);

-- +goose Down
DROP TABLE finding_replacements;
DROP INDEX findings_owner;
DROP INDEX findings_environment;
DROP INDEX findings_status_risk;
ALTER TABLE findings DROP COLUMN owner;
ALTER TABLE findings DROP COLUMN environment;
ALTER TABLE findings DROP COLUMN risk_factors;
ALTER TABLE findings DROP COLUMN risk;
