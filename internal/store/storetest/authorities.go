package storetest

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/signet-id/signet/internal/errkind"
	"github.com/signet-id/signet/internal/store"
)

var authorityTests = map[string]func(t *testing.T, s *store.Store){
	"PutListUpsert": testAuthorityPutList,
	"Invalid":       testAuthorityInvalid,
	"Delete":        testAuthorityDelete,
	"Upstream":      testAuthorityUpstream,
}

func authority(kind store.AuthorityKind, id string, state store.AuthorityState) store.Authority {
	a := store.Authority{
		ID: id, Kind: kind, State: state, ServerID: "server-1",
		PublicKey: []byte("pkix-" + id),
		NotBefore: epoch, NotAfter: epoch.Add(24 * time.Hour),
	}
	if kind == store.AuthorityX509 {
		a.Certificate = []byte("der-" + id)
	}
	return a
}

func testAuthorityPutList(t *testing.T, s *store.Store) {
	x := authority(store.AuthorityX509, "aa01", store.StatePrepared)
	j := authority(store.AuthorityJWT, "kid-1", store.StateActive)
	must(t, "PutAuthority", s.PutAuthority(ctxFor(t), x))
	must(t, "PutAuthority", s.PutAuthority(ctxFor(t), j))
	got, err := s.ListAuthorities(t.Context())
	must(t, "ListAuthorities", err)
	if len(got) != 2 {
		t.Fatalf("ListAuthorities() = %d authorities, want 2", len(got))
	}
	created := got[1].CreatedAt
	ignoreStamps := cmp.FilterPath(func(p cmp.Path) bool {
		f := p.Last().String()
		return f == ".CreatedAt" || f == ".UpdatedAt"
	}, cmp.Ignore())
	if diff := cmp.Diff([]store.Authority{j, x}, got, ignoreStamps); diff != "" {
		t.Errorf("ListAuthorities() (-want +got):\n%s", diff)
	}
	if created.IsZero() || !got[1].UpdatedAt.Equal(created) {
		t.Errorf("CreatedAt, UpdatedAt = %v, %v, want set and equal", created, got[1].UpdatedAt)
	}
	// A page at a time, after the last one of the previous page.
	x2 := authority(store.AuthorityX509, "aa00", store.StatePrepared)
	x2.NotBefore = epoch.Add(time.Hour) // after aa01 by time, before it by ID
	must(t, "PutAuthority", s.PutAuthority(ctxFor(t), x2))
	var pages []string
	var after store.AuthorityCursor
	for range 4 {
		page, err := s.ListAuthoritiesPage(t.Context(), after, 1)
		must(t, "ListAuthoritiesPage", err)
		if len(page) == 0 {
			break
		}
		pages = append(pages, page[0].ID)
		after = store.AuthorityCursor{Kind: page[0].Kind, NotBefore: page[0].NotBefore, ID: page[0].ID}
	}
	if diff := cmp.Diff([]string{"kid-1", "aa01", "aa00"}, pages); diff != "" {
		t.Errorf("ListAuthoritiesPage by 1 (-want +got):\n%s", diff)
	}
	must(t, "DeleteAuthority", s.DeleteAuthority(ctxFor(t), store.AuthorityX509, "aa00"))

	rev := revision(t, s)
	x.State = store.StateActive
	must(t, "PutAuthority(activate)", s.PutAuthority(ctxFor(t), x))
	if revision(t, s) != rev+1 {
		t.Errorf("PutAuthority did not bump the revision")
	}
	got, err = s.ListAuthorities(t.Context())
	must(t, "ListAuthorities", err)
	if len(got) != 2 || got[1].State != store.StateActive || !got[1].CreatedAt.Equal(created) {
		t.Errorf("after upsert: %+v, want 2 authorities, x509 active, CreatedAt kept", got)
	}
	recs := auditLog(t, s)
	last := recs[len(recs)-1]
	if last.Action != "authority.active" || last.Detail["kind"] != "x509" || last.Detail["id"] != "aa01" {
		t.Errorf("last audit = %+v, want authority.active with kind and id", last)
	}
}

func testAuthorityInvalid(t *testing.T, s *store.Store) {
	noKey := authority(store.AuthorityJWT, "k", store.StateActive)
	noKey.PublicKey = nil
	noCert := authority(store.AuthorityX509, "c", store.StateActive)
	noCert.Certificate = nil
	cases := map[string]store.Authority{
		"bad kind":     authority("pgp", "k", store.StateActive),
		"no id":        authority(store.AuthorityJWT, "", store.StateActive),
		"bad state":    authority(store.AuthorityJWT, "k", "retired"),
		"no key":       noKey,
		"x509 no cert": noCert,
		"jwt upstream": func() store.Authority {
			a := authority(store.AuthorityJWT, "u", store.StateActive)
			a.UpstreamRoots = []byte("root")
			return a
		}(),
		"chain without roots": func() store.Authority {
			a := authority(store.AuthorityX509, "u", store.StateActive)
			a.UpstreamChain = []byte("intermediate")
			return a
		}(),
	}
	for name, a := range cases {
		wantKind(t, "PutAuthority("+name+")", s.PutAuthority(ctxFor(t), a), errkind.InvalidArgument)
	}
}

func testAuthorityDelete(t *testing.T, s *store.Store) {
	must(t, "PutAuthority", s.PutAuthority(ctxFor(t), authority(store.AuthorityJWT, "k1", store.StateOld)))
	must(t, "DeleteAuthority", s.DeleteAuthority(ctxFor(t), store.AuthorityJWT, "k1"))
	if got, _ := s.ListAuthorities(t.Context()); len(got) != 0 {
		t.Errorf("ListAuthorities() = %v after delete, want none", got)
	}
	wantKind(t, "DeleteAuthority(again)", s.DeleteAuthority(ctxFor(t), store.AuthorityJWT, "k1"), errkind.NotFound)
	if revision(t, s) != 2 {
		t.Errorf("Revision = %d, want 2", revision(t, s))
	}
}

// testAuthorityUpstream: the key id and the upstream chain and roots round
// trip, and an upsert can clear them.
func testAuthorityUpstream(t *testing.T, s *store.Store) {
	x := authority(store.AuthorityX509, "bb02", store.StateActive)
	x.KeyID = "x509-0123456789abcdef"
	x.UpstreamChain = []byte("der-intermediate")
	x.UpstreamRoots = []byte("der-root-1der-root-2")
	must(t, "PutAuthority", s.PutAuthority(ctxFor(t), x))
	got, err := s.ListAuthorities(t.Context())
	must(t, "ListAuthorities", err)
	if len(got) != 1 {
		t.Fatalf("ListAuthorities() = %d authorities, want 1", len(got))
	}
	g := got[0]
	if g.KeyID != x.KeyID || string(g.UpstreamChain) != string(x.UpstreamChain) || string(g.UpstreamRoots) != string(x.UpstreamRoots) {
		t.Errorf("ListAuthorities() = key %q chain %q roots %q, want %q %q %q",
			g.KeyID, g.UpstreamChain, g.UpstreamRoots, x.KeyID, x.UpstreamChain, x.UpstreamRoots)
	}

	x.UpstreamChain, x.UpstreamRoots = nil, []byte("der-root-3")
	must(t, "PutAuthority(upsert)", s.PutAuthority(ctxFor(t), x))
	got, err = s.ListAuthorities(t.Context())
	must(t, "ListAuthorities", err)
	if g := got[0]; g.UpstreamChain != nil || string(g.UpstreamRoots) != "der-root-3" {
		t.Errorf("after upsert: chain %q roots %q, want nil and der-root-3", g.UpstreamChain, g.UpstreamRoots)
	}
}
