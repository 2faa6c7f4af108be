-- When an SVID of an entry was first and last served to a workload, as its
-- agents report (minting alone proves nothing: an entry whose selectors
-- never match is minted for and never served). Unix nanoseconds UTC, 0 = never.

-- +goose Up
ALTER TABLE entries ADD COLUMN first_served_at INTEGER NOT NULL DEFAULT 0;
ALTER TABLE entries ADD COLUMN last_served_at INTEGER NOT NULL DEFAULT 0;

-- +goose Down
ALTER TABLE entries DROP COLUMN last_served_at;
ALTER TABLE entries DROP COLUMN first_served_at;
