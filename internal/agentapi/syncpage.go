package agentapi

import (
	"encoding/base64"
	"encoding/binary"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/protobuf/proto"

	"github.com/signet-id/signet/internal/apiconv"
	"github.com/signet-id/signet/internal/entrycache"
	"github.com/signet-id/signet/internal/errkind"
	agentv1 "github.com/signet-id/signet/internal/gen/signet/agent/v1"
	commonv1 "github.com/signet-id/signet/internal/gen/signet/common/v1"
	"github.com/signet-id/signet/internal/model"
)

// Paged sync bounds. A page holds at most maxSyncPageSize entries and
// stops adding them past maxSyncPageBytes of encoded entries and ids, so
// it stays far below the agent API's 4 MiB message limit whatever the
// entries hold (an entry is at most a few tens of KiB).
const (
	maxSyncPageSize  = 5000
	maxSyncPageBytes = 1 << 20
	// maxPageAge bounds one paged sync: a token older than this is
	// refused and the agent starts again. Its pages are then too stale to
	// be worth completing (the agent catches up on everything that changed
	// since the first page anyway).
	maxPageAge = 5 * time.Minute
	// maxPageTokenLen bounds the page_token string before decoding.
	maxPageTokenLen = 512
)

// pageMode says what a paged sync's pages carry; it is decided at the
// first page and travels in the token.
type pageMode byte

const (
	// modeFull: every entry of the node, in ranges (a full sync).
	modeFull pageMode = 'F'
	// modeIDs: every entry id of the node and the entries changed since
	// known_revision (an incremental sync whose entry-set digest is stale).
	modeIDs pageMode = 'I'
	// modeChanged: only the entries changed since known_revision (the
	// agent holds the right set of ids).
	modeChanged pageMode = 'C'
)

const pageTokenVersion = 1

// pageToken is the state of a paged sync between pages: what the first
// page decided and the keyset cursor (the last entry id sent).
type pageToken struct {
	mode pageMode
	// known is the request's known_revision, first is the cache revision
	// the first page was read at (every page reports it as revision).
	known, first int64
	issued       int64 // unix seconds
	after        string
}

// encode returns the token as sent in next_page_token.
func (t pageToken) encode() string {
	b := make([]byte, 0, 2+3*binary.MaxVarintLen64+len(t.after))
	b = append(b, pageTokenVersion, byte(t.mode))
	b = binary.AppendVarint(b, t.known)
	b = binary.AppendVarint(b, t.first)
	b = binary.AppendVarint(b, t.issued)
	b = append(b, t.after...)
	return base64.RawURLEncoding.EncodeToString(b)
}

// parsePageToken decodes a page_token (untrusted input). Every error names
// the field and what would be accepted.
func parsePageToken(s string) (pageToken, error) {
	bad := func(why string) (pageToken, error) {
		return pageToken{}, errkind.New(errkind.InvalidArgument,
			"page_token: %s; send the next_page_token of the previous Sync response, or none to start", why)
	}
	if len(s) > maxPageTokenLen {
		return bad("longer than any token this server issues")
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return bad("not a token this server issued (not base64url)")
	}
	if len(b) < 2 || b[0] != pageTokenVersion {
		return bad("not a token this server issued (unknown version)")
	}
	t := pageToken{mode: pageMode(b[1])}
	switch t.mode {
	case modeFull, modeIDs, modeChanged:
	default:
		return bad("not a token this server issued (unknown mode)")
	}
	b = b[2:]
	for _, v := range []*int64{&t.known, &t.first, &t.issued} {
		x, n := binary.Varint(b)
		if n <= 0 || x < 0 {
			return bad("not a token this server issued (bad number)")
		}
		*v, b = x, b[n:]
	}
	if len(b) == 0 || len(b) > model.MaxEntryIDLen {
		return bad("not a token this server issued (bad cursor)")
	}
	t.after = string(b)
	return t, nil
}

// nodeView is what a sync reads of the calling node's entries: the
// entry cache, asked for one page at a time, so a page costs its own
// entries whatever the node's size.
type nodeView struct {
	entries *entrycache.Cache
	id      spiffeid.ID
	sels    []model.Selector
	now     time.Time
}

func (s *Service) viewOf(node model.Node, now time.Time) nodeView {
	return nodeView{entries: s.cfg.Entries, id: node.SPIFFEID, sels: node.Selectors, now: now}
}

func (v nodeView) page(q entrycache.Query) ([]entrycache.Item, bool) {
	return v.entries.NodePage(v.id, v.sels, v.now, q)
}

func (v nodeView) ids() []string { return v.entries.NodeEntryIDs(v.id, v.sels, v.now) }

func (v nodeView) all() []*model.Entry { return v.entries.NodeEntries(v.id, v.sels, v.now) }

func (v nodeView) federatesWith() []spiffeid.TrustDomain {
	return v.entries.NodeFederatesWith(v.id, v.sels, v.now)
}

// resumePageToken decodes the page_token of a later page and checks it
// still applies: issued for the request's known_revision, not too old, and
// not ahead of this server's entries (revision rev).
func resumePageToken(req *agentv1.SyncRequest, rev int64, now time.Time) (pageToken, error) {
	tok, err := parsePageToken(req.GetPageToken())
	if err != nil {
		return tok, err
	}
	if known := req.GetKnownRevision(); tok.known != known {
		return tok, errkind.New(errkind.InvalidArgument,
			"page_token: issued for known_revision %d, the request has %d; send the same known_revision on every page", tok.known, known)
	}
	if age := now.Sub(time.Unix(tok.issued, 0)); age > maxPageAge || age < -maxPageAge {
		return tok, errkind.New(errkind.FailedPrecondition,
			"page_token: this paged sync started more than %s ago; start again without page_token", maxPageAge)
	}
	if rev < tok.first {
		return tok, errkind.New(errkind.FailedPrecondition,
			"page_token: this server's entries (revision %d) are older than the first page's (%d); start again without page_token", rev, tok.first)
	}
	return tok, nil
}

// syncPage answers a paged Sync (page_size set). resp already holds the
// bundle and broker URL; v reads the node's current entries and rev is the
// cache revision read before them.
func (s *Service) syncPage(req *agentv1.SyncRequest, resp *agentv1.SyncResponse, v nodeView, rev int64) error {
	now := v.now
	known := req.GetKnownRevision()
	var tok pageToken
	if req.GetPageToken() == "" {
		tok = pageToken{known: known, first: rev, issued: now.Unix()}
		switch {
		case known <= 0 || known > rev:
			tok.mode = modeFull
		case known == rev:
			return nil // nothing changed: one empty last page
		default:
			tok.mode = modeChanged
			if digest := apiconv.EntrySetDigest(v.ids()); string(digest) != string(req.GetEntrySetDigest()) {
				tok.mode = modeIDs
			}
		}
	} else {
		var err error
		if tok, err = resumePageToken(req, rev, now); err != nil {
			return err
		}
	}
	resp.Revision = tok.first
	resp.Full = tok.mode == modeFull
	resp.EntryIdsSet = tok.mode == modeIDs
	size := min(int(req.GetPageSize()), maxSyncPageSize)
	q := entrycache.Query{After: tok.after, Limit: size}
	if tok.mode != modeFull {
		// modeChanged sends only the entries changed since known;
		// modeIDs every id, and the entries of those changed.
		q.Since, q.AllIDs = tok.known, tok.mode == modeIDs
	}
	page, more := v.page(q)
	bytes := 0
	for i, it := range page {
		var pe *commonv1.Entry
		n := 0
		if it.Entry != nil {
			pe = apiconv.EntryToProto(*it.Entry)
			n += proto.Size(pe) + 4
		}
		if tok.mode == modeIDs {
			n += len(it.ID) + 3
		}
		if i > 0 && bytes+n > maxSyncPageBytes {
			page, more = page[:i], true
			break
		}
		bytes += n
		if pe != nil {
			resp.Entries = append(resp.Entries, pe)
		}
		if tok.mode == modeIDs {
			resp.EntryIds = append(resp.EntryIds, it.ID)
		}
	}
	if more {
		tok.after = page[len(page)-1].ID
		resp.PageLastId = tok.after
		resp.NextPageToken = tok.encode()
	}
	return nil
}
