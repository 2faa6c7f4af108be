-- The serial an agent SVID renewal replaced stays accepted for a short grace
-- after the node first presents the new one, so that calls already in flight
-- on the old connection are not refused as if the node were evicted.
-- Re-attestation and bans clear it. Times are unix nanoseconds UTC.

-- +goose Up
ALTER TABLE nodes ADD COLUMN prev_serial_number TEXT NOT NULL DEFAULT '';
ALTER TABLE nodes ADD COLUMN prev_serial_until BIGINT NOT NULL DEFAULT 0;

-- +goose Down
ALTER TABLE nodes DROP COLUMN prev_serial_until;
ALTER TABLE nodes DROP COLUMN prev_serial_number;
