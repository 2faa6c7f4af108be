package storetest

import (
	"bytes"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-id/signet/internal/errkind"
	"github.com/signet-id/signet/internal/store"
)

var brokerTests = map[string]func(t *testing.T, s *store.Store){
	"KEKCheck":          testBrokerKEK,
	"SecretVersions":    testSecretVersions,
	"SecretBadInput":    testSecretBadInput,
	"LeaseLifecycle":    testLeaseLifecycle,
	"LeaseList":         testLeaseList,
	"LeaseDue":          testLeaseDue,
	"LeaseBadInput":     testLeaseBadInput,
	"LeaseRaceOneWins":  testLeaseRace,
	"LeaseCreateActive": testLeaseCreateActive,
	"LeaseCreateGroup":  testLeaseCreateGroup,
}

// testLeaseCreateGroup creates leases from many goroutines at once (the
// store group-commits them): every caller gets its own result — a taken id
// fails only that caller, kinded AlreadyExists — every lease is readable
// when its call returns, each decision record sits right before its
// lease.create with its caller's actor, and the audit chain verifies.
func testLeaseCreateGroup(t *testing.T, s *store.Store) {
	_, err := s.CreateLease(ctxFor(t), newLease("taken", time.Now(), time.Minute))
	must(t, "CreateLease(taken)", err)
	const n = 48
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			l := newLease(fmt.Sprintf("group-%02d", i), time.Now(), time.Minute)
			if i%8 == 7 {
				l.ID = "taken"
			}
			if i%2 == 0 {
				l.State, l.SecretVersion = store.LeaseActive, int64(i)
			}
			actor := fmt.Sprintf("test:caller-%02d", i)
			got, err := s.CreateLease(store.WithActor(t.Context(), actor), l, store.AuditRecord{Action: "broker.allow", Object: l.Credential,
				Detail: map[string]string{"caller": actor}})
			errs[i] = err
			if err != nil {
				return
			}
			back, err := s.GetLease(t.Context(), l.ID)
			if err != nil {
				errs[i] = fmt.Errorf("GetLease(%s) after CreateLease returned: %w", l.ID, err)
				return
			}
			if back.State != got.State || back.SecretVersion != l.SecretVersion || got.UpdatedAt.IsZero() {
				errs[i] = fmt.Errorf("GetLease(%s) = %+v, CreateLease returned %+v", l.ID, back, got)
			}
		})
	}
	wg.Wait()
	created := 0
	for i, err := range errs {
		if i%8 == 7 {
			wantKind(t, fmt.Sprintf("CreateLease(caller %d, taken id)", i), err, errkind.AlreadyExists)
			continue
		}
		must(t, fmt.Sprintf("CreateLease(caller %d)", i), err)
		created++
	}
	recs, err := s.ListAudit(t.Context(), store.AuditFilter{})
	must(t, "ListAudit", err)
	decisions, creates := 0, 0
	for j, r := range recs {
		switch r.Action {
		case "broker.allow":
			decisions++
			if j+1 >= len(recs) || recs[j+1].Action != "lease.create" || recs[j+1].Actor != r.Actor {
				t.Errorf("decision %v is not followed by its lease.create", r)
				continue
			}
			if want := r.Detail["caller"]; r.Actor != want {
				t.Errorf("decision %v: actor %q, want %q", r, r.Actor, want)
			}
		case "lease.create":
			creates++
		}
	}
	if decisions != created || creates != created+1 {
		t.Errorf("%d decision and %d lease.create records, want %d and %d", decisions, creates, created, created+1)
	}
	verifyOK(t, s)
}

// testLeaseCreateActive records a lease active at once, with the decision
// audited in the same write.
func testLeaseCreateActive(t *testing.T, s *store.Store) {
	l := newLease("act", time.Now(), time.Minute)
	l.State, l.RevokeData, l.SecretVersion = store.LeaseActive, []byte("sealed"), 4
	got, err := s.CreateLease(ctxFor(t), l, store.AuditRecord{Action: "broker.allow", Object: "orders-db", Detail: map[string]string{"rule": "r"}})
	must(t, "CreateLease(active)", err)
	if got.State != store.LeaseActive || string(got.RevokeData) != "sealed" {
		t.Fatalf("CreateLease(active) = %+v", got)
	}
	back, err := s.GetLease(t.Context(), "act")
	must(t, "GetLease", err)
	if back.State != store.LeaseActive || string(back.RevokeData) != "sealed" || back.SecretVersion != 4 {
		t.Errorf("GetLease = %+v", back)
	}
	recs, err := s.ListAudit(t.Context(), store.AuditFilter{Action: "broker.allow"})
	must(t, "ListAudit", err)
	if len(recs) != 1 || recs[0].Detail["rule"] != "r" || recs[0].Actor == "" {
		t.Errorf("decision audit = %+v", recs)
	}
	bad := newLease("bad-state", time.Now(), time.Minute)
	bad.State = store.LeaseRevoked
	_, err = s.CreateLease(ctxFor(t), bad)
	wantKind(t, "CreateLease(revoked)", err, errkind.InvalidArgument)
	_, err = s.CreateLease(ctxFor(t), newLease("no-action", time.Now(), time.Minute), store.AuditRecord{})
	wantKind(t, "CreateLease(audit without action)", err, errkind.InvalidArgument)
	verifyOK(t, s)
}

func testBrokerKEK(t *testing.T, s *store.Store) {
	got, err := s.EnsureBrokerKEK(ctxFor(t), "k1", []byte("check-1"))
	must(t, "EnsureBrokerKEK", err)
	if string(got) != "check-1" {
		t.Fatalf("EnsureBrokerKEK(first) = %q, want check-1", got)
	}
	got, err = s.EnsureBrokerKEK(ctxFor(t), "k2", []byte("check-2"))
	must(t, "EnsureBrokerKEK(again)", err)
	if string(got) != "check-1" {
		t.Fatalf("EnsureBrokerKEK(second) = %q, want the first check value kept", got)
	}
}

func testSecretVersions(t *testing.T, s *store.Store) {
	_, err := s.CurrentSecret(t.Context(), "stripe")
	wantKind(t, "CurrentSecret(missing)", err, errkind.NotFound)
	_, err = s.RotateSecret(ctxFor(t), "stripe", "k1", []byte("v0"))
	wantKind(t, "RotateSecret(missing)", err, errkind.NotFound)

	v1, err := s.PutSecret(ctxFor(t), "stripe", "k1", []byte("sealed-1"))
	must(t, "PutSecret", err)
	if v1.Version != 1 {
		t.Errorf("PutSecret version = %d, want 1", v1.Version)
	}
	_, err = s.PutSecret(ctxFor(t), "stripe", "k1", []byte("again"))
	wantKind(t, "PutSecret(exists)", err, errkind.AlreadyExists)
	v2, err := s.RotateSecret(ctxFor(t), "stripe", "k1", []byte("sealed-2"))
	must(t, "RotateSecret", err)
	if v2.Version != 2 {
		t.Errorf("RotateSecret version = %d, want 2", v2.Version)
	}
	_, err = s.PutSecret(ctxFor(t), "other", "k1", []byte("o"))
	must(t, "PutSecret(other)", err)

	cur, err := s.CurrentSecret(t.Context(), "stripe")
	must(t, "CurrentSecret", err)
	if cur.Version != 2 || !bytes.Equal(cur.Sealed, []byte("sealed-2")) || cur.KeyID != "k1" {
		t.Errorf("CurrentSecret = %+v, want version 2 with sealed-2", cur)
	}
	list, err := s.ListSecrets(t.Context())
	must(t, "ListSecrets", err)
	if len(list) != 2 || list[0].Name != "other" || list[1].Name != "stripe" || list[1].Version != 2 {
		t.Fatalf("ListSecrets = %+v", list)
	}
	if page, err := s.ListSecretsPage(t.Context(), "other", 1); err != nil || len(page) != 1 || page[0].Name != "stripe" {
		t.Errorf("ListSecretsPage(after other, 1) = %+v, %v; want stripe", page, err)
	}
	if page, err := s.ListSecretsPage(t.Context(), "", 1); err != nil || len(page) != 1 || page[0].Name != "other" {
		t.Errorf("ListSecretsPage(first, 1) = %+v, %v; want other", page, err)
	}
	for _, sec := range list {
		if sec.Sealed != nil {
			t.Errorf("ListSecrets returned the sealed value of %s", sec.Name)
		}
	}
	recs, err := s.ListAudit(t.Context(), store.AuditFilter{Action: "secret.rotate"})
	must(t, "ListAudit", err)
	if len(recs) != 1 || recs[0].Object != "stripe" || recs[0].Detail["version"] != "2" {
		t.Errorf("secret.rotate audit = %+v", recs)
	}
	verifyOK(t, s)
}

func testSecretBadInput(t *testing.T, s *store.Store) {
	for _, name := range []string{"", "-x", "a b", "a/b", string(make([]byte, 200))} {
		_, err := s.PutSecret(ctxFor(t), name, "k", []byte("x"))
		wantKind(t, fmt.Sprintf("PutSecret(%q)", name), err, errkind.InvalidArgument)
	}
	_, err := s.PutSecret(ctxFor(t), "empty", "k", nil)
	wantKind(t, "PutSecret(empty value)", err, errkind.InvalidArgument)
}

func newLease(id string, issued time.Time, ttl time.Duration) store.Lease {
	return store.Lease{
		ID: id, Credential: "orders-db", Provider: "postgres",
		Subject: spiffe("spiffe://example.org/etl"), Node: spiffe("spiffe://example.org/node/a"),
		Context:  map[string]any{"ticket": "CHG-1", "n": float64(2)},
		IssuedAt: issued, ExpiresAt: issued.Add(ttl),
	}
}

func spiffe(s string) spiffeid.ID { return id(s) }

var leaseCmp = cmp.Options{cmpOpts, cmpopts.IgnoreFields(store.Lease{}, "UpdatedAt")}

func testLeaseLifecycle(t *testing.T, s *store.Store) {
	now := time.Now().UTC().Truncate(time.Microsecond)
	in := newLease("l-1", now, 10*time.Minute)
	l, err := s.CreateLease(ctxFor(t), in)
	must(t, "CreateLease", err)
	if l.State != store.LeasePending {
		t.Fatalf("CreateLease state = %s, want pending", l.State)
	}
	_, err = s.CreateLease(ctxFor(t), in)
	wantKind(t, "CreateLease(dup)", err, errkind.AlreadyExists)
	got, err := s.GetLease(t.Context(), "l-1")
	must(t, "GetLease", err)
	if diff := cmp.Diff(l, got, leaseCmp); diff != "" {
		t.Errorf("GetLease after create (-want +got):\n%s", diff)
	}

	_, err = s.RenewLease(ctxFor(t), "l-1", now.Add(time.Hour))
	wantKind(t, "RenewLease(pending)", err, errkind.FailedPrecondition)

	exp := now.Add(5 * time.Minute)
	act, err := s.ActivateLease(ctxFor(t), "l-1", []byte("sealed-revoke"), exp)
	must(t, "ActivateLease", err)
	if act.State != store.LeaseActive || !act.ExpiresAt.Equal(exp) || string(act.RevokeData) != "sealed-revoke" {
		t.Fatalf("ActivateLease = %+v", act)
	}
	_, err = s.ActivateLease(ctxFor(t), "l-1", nil, time.Time{})
	wantKind(t, "ActivateLease(active)", err, errkind.FailedPrecondition)
	ren, err := s.RenewLease(ctxFor(t), "l-1", now.Add(20*time.Minute))
	must(t, "RenewLease", err)
	if !ren.ExpiresAt.Equal(now.Add(20 * time.Minute)) {
		t.Errorf("RenewLease expires = %v", ren.ExpiresAt)
	}

	_, err = s.EndLease(ctxFor(t), "l-1", store.LeaseActive, "x")
	wantKind(t, "EndLease(active)", err, errkind.InvalidArgument)
	end, err := s.EndLease(ctxFor(t), "l-1", store.LeaseRevoked, "operator")
	must(t, "EndLease", err)
	if end.State != store.LeaseRevoked || end.Reason != "operator" {
		t.Fatalf("EndLease = %+v", end)
	}
	// Ending again (another replica's sweeper) is a no-op returning the lease.
	again, err := s.EndLease(ctxFor(t), "l-1", store.LeaseExpired, "sweeper")
	must(t, "EndLease(again)", err)
	if again.State != store.LeaseRevoked || again.Reason != "operator" {
		t.Errorf("EndLease(again) = %+v, want revoked by operator", again)
	}
	_, err = s.EndLease(ctxFor(t), "nope", store.LeaseRevoked, "")
	wantKind(t, "EndLease(missing)", err, errkind.NotFound)
	_, err = s.GetLease(t.Context(), "nope")
	wantKind(t, "GetLease(missing)", err, errkind.NotFound)

	for _, action := range []string{"lease.create", "lease.activate", "lease.renew", "lease.revoke"} {
		recs, err := s.ListAudit(t.Context(), store.AuditFilter{Action: action})
		must(t, "ListAudit", err)
		if len(recs) != 1 || recs[0].Object != "l-1" || recs[0].Detail["credential"] != "orders-db" {
			t.Errorf("%s audit = %+v", action, recs)
		}
	}
	verifyOK(t, s)
}

func testLeaseList(t *testing.T, s *store.Store) {
	now := time.Now().UTC()
	a := newLease("a", now, time.Minute)
	b := newLease("b", now.Add(time.Second), time.Minute)
	b.Credential = "stripe"
	b.Provider = "static"
	b.SecretVersion = 3
	c := newLease("c", now.Add(2*time.Second), time.Minute)
	c.Subject = id("spiffe://example.org/other")
	for _, l := range []store.Lease{a, b, c} {
		_, err := s.CreateLease(ctxFor(t), l)
		must(t, "CreateLease", err)
	}
	_, err := s.ActivateLease(ctxFor(t), "b", nil, time.Time{})
	must(t, "ActivateLease", err)
	ids := func(f store.LeaseFilter) []string {
		ls, err := s.ListLeases(t.Context(), f)
		must(t, "ListLeases", err)
		var out []string
		for _, l := range ls {
			out = append(out, l.ID)
		}
		return out
	}
	cases := map[string]struct {
		f    store.LeaseFilter
		want []string
	}{
		"all":        {store.LeaseFilter{}, []string{"c", "b", "a"}},
		"credential": {store.LeaseFilter{Credential: "orders-db"}, []string{"c", "a"}},
		"subject":    {store.LeaseFilter{Subject: id("spiffe://example.org/etl")}, []string{"b", "a"}},
		"active":     {store.LeaseFilter{States: []store.LeaseState{store.LeaseActive}}, []string{"b"}},
		"limit":      {store.LeaseFilter{Limit: 1}, []string{"c"}},
		"none":       {store.LeaseFilter{Credential: "x"}, nil},
	}
	all, err := s.ListLeases(t.Context(), store.LeaseFilter{})
	must(t, "ListLeases", err)
	if len(all) == 3 { // pages: after a listed lease, in the same order
		at := func(i int) store.LeaseCursor { return store.LeaseCursor{IssuedAt: all[i].IssuedAt, ID: all[i].ID} }
		cases["page after c"] = struct {
			f    store.LeaseFilter
			want []string
		}{store.LeaseFilter{After: at(0), Limit: 1}, []string{"b"}}
		cases["page after b"] = struct {
			f    store.LeaseFilter
			want []string
		}{store.LeaseFilter{After: at(1)}, []string{"a"}}
		cases["page after a"] = struct {
			f    store.LeaseFilter
			want []string
		}{store.LeaseFilter{After: at(2)}, nil}
		cases["page with filter"] = struct {
			f    store.LeaseFilter
			want []string
		}{store.LeaseFilter{Credential: "orders-db", After: at(0)}, []string{"a"}}
	}
	for name, tc := range cases {
		if diff := cmp.Diff(tc.want, ids(tc.f)); diff != "" {
			t.Errorf("ListLeases(%s) (-want +got):\n%s", name, diff)
		}
	}
	counts, err := s.CountLeases(t.Context())
	must(t, "CountLeases", err)
	want := []store.LeaseCount{
		{Credential: "orders-db", State: store.LeasePending, Count: 2, OldestIssued: a.IssuedAt},
		{Credential: "stripe", State: store.LeaseActive, Count: 1, OldestIssued: b.IssuedAt},
	}
	if diff := cmp.Diff(want, counts, cmpopts.EquateApproxTime(time.Microsecond)); diff != "" {
		t.Errorf("CountLeases (-want +got):\n%s", diff)
	}
}

func testLeaseDue(t *testing.T, s *store.Store) {
	now := time.Now().UTC()
	mk := func(id string, issued time.Time, ttl time.Duration, activate bool) {
		_, err := s.CreateLease(ctxFor(t), newLease(id, issued, ttl))
		must(t, "CreateLease", err)
		if activate {
			_, err = s.ActivateLease(ctxFor(t), id, nil, time.Time{})
			must(t, "ActivateLease", err)
		}
	}
	mk("active-expired", now.Add(-2*time.Minute), time.Minute, true)
	mk("active-live", now.Add(-2*time.Minute), time.Hour, true)
	mk("pending-stale", now.Add(-5*time.Minute), time.Hour, false)
	mk("pending-fresh", now.Add(-time.Second), time.Hour, false)
	mk("pending-expired", now.Add(-time.Hour), time.Minute, false)
	mk("ended", now.Add(-time.Hour), time.Minute, true)
	_, err := s.EndLease(ctxFor(t), "ended", store.LeaseRevoked, "")
	must(t, "EndLease", err)

	due, err := s.DueLeases(t.Context(), now, now.Add(-time.Minute), 0)
	must(t, "DueLeases", err)
	var got []string
	for _, l := range due {
		got = append(got, l.ID)
	}
	want := []string{"pending-expired", "active-expired", "pending-stale"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("DueLeases (-want +got):\n%s", diff)
	}
	if due, _ := s.DueLeases(t.Context(), now, now.Add(-time.Minute), 1); len(due) != 1 {
		t.Errorf("DueLeases(limit 1) returned %d", len(due))
	}
}

func testLeaseBadInput(t *testing.T, s *store.Store) {
	now := time.Now()
	cases := map[string]func(l *store.Lease){
		"no id":          func(l *store.Lease) { l.ID = "" },
		"bad credential": func(l *store.Lease) { l.Credential = "a b" },
		"no provider":    func(l *store.Lease) { l.Provider = "" },
		"no subject":     func(l *store.Lease) { l.Subject = spiffeid.ID{} },
		"expired":        func(l *store.Lease) { l.ExpiresAt = l.IssuedAt },
		"context":        func(l *store.Lease) { l.Context = map[string]any{"x": make(chan int)} },
		"big context":    func(l *store.Lease) { l.Context = map[string]any{"x": string(make([]byte, 70<<10))} },
	}
	for name, mod := range cases {
		l := newLease("bad-"+name, now, time.Minute)
		mod(&l)
		_, err := s.CreateLease(ctxFor(t), l)
		wantKind(t, "CreateLease("+name+")", err, errkind.InvalidArgument)
	}
	if ls, _ := s.ListLeases(t.Context(), store.LeaseFilter{}); len(ls) != 0 {
		t.Errorf("refused leases were stored: %+v", ls)
	}
}

// testLeaseRace ends one lease from many goroutines (replicas' sweepers and
// an operator): exactly one transition is recorded.
func testLeaseRace(t *testing.T, s *store.Store) {
	_, err := s.CreateLease(ctxFor(t), newLease("race", time.Now(), time.Minute))
	must(t, "CreateLease", err)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			state := store.LeaseExpired
			if i%2 == 0 {
				state = store.LeaseRevoked
			}
			if _, err := s.EndLease(ctxFor(t), "race", state, fmt.Sprint(i)); err != nil {
				t.Errorf("EndLease: %v", err)
			}
		})
	}
	wg.Wait()
	rev, _ := s.ListAudit(t.Context(), store.AuditFilter{Action: "lease.revoke"})
	exp, _ := s.ListAudit(t.Context(), store.AuditFilter{Action: "lease.expire"})
	if len(rev)+len(exp) != 1 {
		t.Errorf("%d revoke and %d expire records, want one in all", len(rev), len(exp))
	}
}
