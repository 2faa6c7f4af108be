-- The network addresses a node's agent was seen connecting from, as the
-- server observed them on the mTLS agent API (the peer address of
-- authenticated calls): at most a few of the most recent per node, for the
-- ssh provider's source_address_from_node. An address goes with its node.
-- Times are unix nanoseconds UTC.

-- +goose Up
CREATE TABLE node_addresses (
    node_id       TEXT    NOT NULL REFERENCES nodes (spiffe_id) ON DELETE CASCADE,
    address       TEXT    NOT NULL,
    first_seen_at INTEGER NOT NULL,
    last_seen_at  INTEGER NOT NULL,
    PRIMARY KEY (node_id, address)
) STRICT;

-- +goose Down
DROP TABLE node_addresses;
