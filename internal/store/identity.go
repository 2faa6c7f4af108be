package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/signet-id/signet/internal/errkind"
)

// The store keeps identities apart, inside the write transaction that
// would break the rule (so two concurrent admin calls cannot both pass):
//
//   - an entry's SPIFFE ID is never an attested node's ID, nor the agent ID
//     a pending join token grants: a workload must not receive an SVID that
//     carries a node's identity;
//   - with Config.NodeAliasParent set, node aliases (entries whose parent
//     it is) and other entries never share a SPIFFE ID, for the same
//     reason (several aliases may share one);
//   - a join token never grants the SPIFFE ID of an entry;
//   - a node is never admitted for the first time under an entry's
//     SPIFFE ID (attestors other than join tokens choose IDs themselves).
//
// Clashes are kinded AlreadyExists: the identity is taken.

// isAlias reports whether an entry with this parent is a node alias.
func (s *Store) isAlias(parentID string) bool {
	return s.aliasParent != "" && parentID == s.aliasParent
}

// entryIdentityClashes checks the SPIFFE IDs of entries about to be
// written against nodes, pending join tokens and, with withEntries, for the
// alias rule, other entries (except the entry with ID exclude, which is
// being replaced; callers that read those entries anyway check them with
// aliasClash). alias tells, per SPIFFE ID, whether the entries written with
// it are node aliases. It returns the reason per clashing SPIFFE ID.
func (t *wtx) entryIdentityClashes(ctx context.Context, s *Store, alias map[string]bool, exclude string, withEntries bool) (map[string]error, error) {
	clashes := make(map[string]error)
	ids := make([]string, 0, len(alias))
	for id := range alias {
		ids = append(ids, id)
	}
	err := t.queryIn(ctx, "SELECT spiffe_id FROM nodes WHERE spiffe_id", nil, ids, func(rows *sql.Rows) error {
		var id string
		if err := rows.Scan(&id); err != nil {
			return err
		}
		clashes[id] = errkind.New(errkind.AlreadyExists,
			"spiffe_id %s is the ID of an attested node: an entry may not carry a node's identity; choose another spiffe_id", id)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("check entry ids against nodes: %w", err)
	}
	// Pending tokens are few (expired ones are pruned): one scan beats an
	// index the table does not have.
	rows, err := t.query(ctx, "SELECT spiffe_id FROM join_tokens WHERE spiffe_id <> '' AND expires_at > ?", timeToDB(t.now))
	if err != nil {
		return nil, fmt.Errorf("check entry ids against join tokens: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		if _, ok := alias[id]; ok && clashes[id] == nil {
			clashes[id] = errkind.New(errkind.AlreadyExists,
				"spiffe_id %s is the agent ID of a pending join token: an entry may not carry a node's identity; choose another spiffe_id", id)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if s.aliasParent == "" || !withEntries {
		return clashes, nil
	}
	err = t.queryIn(ctx, "SELECT id, spiffe_id, parent_id FROM entries WHERE id <> ? AND spiffe_id", []any{exclude}, ids, func(rows *sql.Rows) error {
		var entryID, id, parent string
		if err := rows.Scan(&entryID, &id, &parent); err != nil {
			return err
		}
		if clashes[id] == nil {
			clashes[id] = s.aliasClash(alias[id], entryID, id, parent)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("check entry ids against node aliases: %w", err)
	}
	return clashes, nil
}

// aliasClash is the error for writing an entry with SPIFFE ID id (a node
// alias when alias is set) while entry entryID, with parent parentID,
// holds it; nil when both are aliases or neither is.
func (s *Store) aliasClash(alias bool, entryID, id, parentID string) error {
	switch other := s.isAlias(parentID); {
	case alias == other:
		return nil
	case alias:
		return errkind.New(errkind.AlreadyExists,
			"spiffe_id %s is the SPIFFE ID of entry %s, a workload entry: a node alias may not share it; choose another spiffe_id", id, entryID)
	default:
		return errkind.New(errkind.AlreadyExists,
			"spiffe_id %s is the ID of node alias %s: an entry may not carry a node's identity; choose another spiffe_id", id, entryID)
	}
}

// entryWithID returns the ID of an entry whose SPIFFE ID is id, or "".
func (t *wtx) entryWithID(ctx context.Context, id string) (string, error) {
	var entryID string
	err := t.queryRow(ctx, "SELECT id FROM entries WHERE spiffe_id = ? LIMIT 1", id).Scan(&entryID)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	return entryID, err
}
