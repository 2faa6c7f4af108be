package store

import "github.com/google/uuid"

// newEntryID returns the ID the store gives an entry created without one: a
// UUID version 7 (RFC 9562) in canonical text form. Its first 48 bits are the
// time in milliseconds, and within one process the IDs increase strictly in
// byte order (google/uuid keeps a sequence in the 12 bits after the version),
// so new entries land at the right edge of every B-tree keyed by entry ID —
// the primary key and, within one selector, the selector index — instead of
// at random leaves: once those indexes outgrow the page cache, a random key
// costs a page read and a page write per insert. The other 62 bits are
// random, so replicas creating entries at the same millisecond do not
// collide. An entry ID names an entry; it is not a secret and grants
// nothing, so its readable creation time leaks nothing the entry's
// created_at does not already show. IDs of other shapes (random UUIDs of
// earlier versions, IDs chosen by callers) stay valid and sort among them.
func newEntryID() string {
	// crypto/rand, which NewV7 reads, does not fail since Go 1.24.
	return uuid.Must(uuid.NewV7()).String()
}
