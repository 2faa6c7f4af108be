package store

import (
	"context"
	"database/sql"
	"errors"
	"maps"
	"slices"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-id/signet/internal/errkind"
)

// SetNodeLabels sets the labels in set (overriding existing values) and
// removes the keys in remove from the node's labels, leaving every other
// field alone (unlike UpdateNode, it cannot race with a renewal of the
// node's SVID). It advances the revision, audits "node.label" and returns
// the node as stored. Errors are kinded NotFound for an unknown node,
// InvalidArgument for malformed labels.
func (s *Store) SetNodeLabels(ctx context.Context, id spiffeid.ID, set map[string]string, remove []string) (Node, error) {
	if id.IsZero() {
		return Node{}, errkind.New(errkind.InvalidArgument, "spiffe_id is required")
	}
	if err := ValidateLabels("set", set); err != nil {
		return Node{}, err
	}
	for _, k := range remove {
		if err := ValidateLabelKey("remove", k); err != nil {
			return Node{}, err
		}
		if _, both := set[k]; both {
			return Node{}, errkind.New(errkind.InvalidArgument, "label %q is both set and removed", k)
		}
	}
	var n Node
	err := s.update(ctx, "set labels of node "+id.String(), true, func(t *wtx) error {
		var err error
		n, err = scanNode(t.queryRow(ctx, nodeSelect+" WHERE spiffe_id = ?", idToDB(id)))
		if errors.Is(err, sql.ErrNoRows) {
			return errkind.New(errkind.NotFound, "node %s not found", id)
		}
		if err != nil {
			return err
		}
		labels := mergeLabels(n.Labels, set)
		for _, k := range remove {
			delete(labels, k)
		}
		if len(labels) > maxLabels {
			return errkind.New(errkind.InvalidArgument, "node %s would have %d labels: at most %d", id, len(labels), maxLabels)
		}
		if len(labels) == 0 {
			labels = nil
		}
		n.Labels, n.Revision = labels, t.rev
		if _, err := t.exec(ctx, "UPDATE nodes SET labels = ?, revision = ? WHERE spiffe_id = ?", labelsToDB(labels), t.rev, idToDB(id)); err != nil {
			return err
		}
		detail := make(map[string]string, len(set)+1)
		for _, k := range slices.Sorted(maps.Keys(set)) {
			detail["set."+k] = set[k]
		}
		if len(remove) > 0 {
			detail["removed"] = strings.Join(slices.Sorted(slices.Values(remove)), ",")
		}
		t.record("node.label", id.String(), detail)
		return nil
	})
	if err != nil {
		return Node{}, err
	}
	return n, nil
}
