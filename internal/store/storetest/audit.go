package storetest

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/signet-id/signet/internal/errkind"
	"github.com/signet-id/signet/internal/store"
)

var auditTests = map[string]func(t *testing.T, s *store.Store){
	"AppendChains":         testAuditAppendChains,
	"AppendRequiresAction": testAuditAppendRequiresAction,
	"ListFilters":          testAuditListFilters,
	"VerifyEmpty":          testAuditVerifyEmpty,
	"VerifyAcrossPages":    testAuditVerifyAcrossPages,
	"TamperAlteredActor":   testAuditTamperAltered,
	"TamperDeleted":        testAuditTamperDeleted,
	"TamperDeletedFirst":   testAuditTamperDeletedFirst,
	"TamperSwapped":        testAuditTamperSwapped,
	"TamperRehashed":       testAuditTamperRehashed,
	"TamperDetail":         testAuditTamperDetail,
	"ConcurrentWriters":    testAuditConcurrentWriters,
}

// fill appends n records, actions "test.<i>" for i = 1…n.
func fill(t *testing.T, s *store.Store, n int) {
	t.Helper()
	recs := make([]store.AuditRecord, n)
	for i := range recs {
		recs[i] = store.AuditRecord{
			Action: fmt.Sprintf("test.%d", i+1), Object: "obj",
			Detail: map[string]string{"i": fmt.Sprint(i + 1), "b": "x"},
		}
	}
	must(t, "AppendAudit", s.AppendAudit(ctxFor(t), recs...))
}

func verifyBad(t *testing.T, s *store.Store, firstBad int64, problem string) {
	t.Helper()
	rep, err := s.VerifyAudit(t.Context())
	must(t, "VerifyAudit", err)
	if rep.OK || rep.FirstBad != firstBad || !strings.Contains(rep.Problem, problem) {
		t.Errorf("VerifyAudit() = %+v, want FirstBad %d with problem %q", rep, firstBad, problem)
	}
}

func testAuditAppendChains(t *testing.T, s *store.Store) {
	at := epoch.Add(-time.Hour).In(time.FixedZone("X", 3600))
	must(t, "AppendAudit", s.AppendAudit(store.WithActor(t.Context(), "agent:a"),
		store.AuditRecord{Action: "svid.x509.sign", Object: "spiffe://example.org/web", Time: at, Seq: 77},
		store.AuditRecord{Action: "policy.deny", Actor: "broker", Detail: map[string]string{"rule": "r1"}},
	))
	must(t, "AppendAudit", s.AppendAudit(t.Context(), store.AuditRecord{Action: "third"}))
	recs := auditLog(t, s)
	if len(recs) != 3 {
		t.Fatalf("ListAudit() = %d records, want 3", len(recs))
	}
	prev := make([]byte, 32)
	for i, r := range recs {
		if r.Seq != int64(i+1) {
			t.Errorf("record %d Seq = %d", i, r.Seq)
		}
		if !bytes.Equal(r.PrevHash, prev) {
			t.Errorf("record %d PrevHash = %x, want %x", r.Seq, r.PrevHash, prev)
		}
		if !bytes.Equal(r.Hash, store.AuditHash(&r)) {
			t.Errorf("record %d Hash does not match AuditHash", r.Seq)
		}
		prev = r.Hash
	}
	if !recs[0].Time.Equal(at) || recs[0].Actor != "agent:a" {
		t.Errorf("record 1 = %+v, want the given time and the context's actor", recs[0])
	}
	if recs[1].Actor != "broker" || recs[1].Detail["rule"] != "r1" || recs[1].Time.IsZero() {
		t.Errorf("record 2 = %+v, want actor broker, detail kept, time assigned", recs[1])
	}
	if recs[2].Actor != store.DefaultActor {
		t.Errorf("record 3 actor = %q, want %q", recs[2].Actor, store.DefaultActor)
	}
	if revision(t, s) != 0 {
		t.Errorf("AppendAudit changed the revision")
	}
	rep := verifyOK(t, s)
	if rep.Records != 3 || !bytes.Equal(rep.Head, recs[2].Hash) {
		t.Errorf("VerifyAudit() = %+v, want 3 records and the head hash", rep)
	}
}

func testAuditAppendRequiresAction(t *testing.T, s *store.Store) {
	err := s.AppendAudit(t.Context(), store.AuditRecord{Action: "ok"}, store.AuditRecord{Object: "x"})
	wantKind(t, "AppendAudit(no action)", err, errkind.InvalidArgument)
	if recs := auditLog(t, s); len(recs) != 0 {
		t.Errorf("a rejected append wrote %d records", len(recs))
	}
	must(t, "AppendAudit()", s.AppendAudit(t.Context()))
}

func testAuditListFilters(t *testing.T, s *store.Store) {
	must(t, "AppendAudit", s.AppendAudit(t.Context(),
		store.AuditRecord{Action: "a", Actor: "alice", Time: epoch},
		store.AuditRecord{Action: "b", Actor: "bob", Time: epoch.Add(time.Minute)},
		store.AuditRecord{Action: "a", Actor: "bob", Time: epoch.Add(2 * time.Minute)},
		store.AuditRecord{Action: "a", Actor: "alice", Time: epoch.Add(3 * time.Minute)},
	))
	cases := []struct {
		name string
		f    store.AuditFilter
		want []int64
	}{
		{"all", store.AuditFilter{}, []int64{1, 2, 3, 4}},
		{"actor", store.AuditFilter{Actor: "bob"}, []int64{2, 3}},
		{"action", store.AuditFilter{Action: "a"}, []int64{1, 3, 4}},
		{"since", store.AuditFilter{Since: epoch.Add(time.Minute)}, []int64{2, 3, 4}},
		{"after seq", store.AuditFilter{AfterSeq: 2}, []int64{3, 4}},
		{"limit", store.AuditFilter{Limit: 2}, []int64{1, 2}},
		{"combined", store.AuditFilter{Actor: "alice", Action: "a", AfterSeq: 1}, []int64{4}},
	}
	for _, c := range cases {
		recs, err := s.ListAudit(t.Context(), c.f)
		must(t, "ListAudit("+c.name+")", err)
		var got []int64
		for _, r := range recs {
			got = append(got, r.Seq)
		}
		if fmt.Sprint(got) != fmt.Sprint(c.want) {
			t.Errorf("ListAudit(%s) seqs = %v, want %v", c.name, got, c.want)
		}
	}
}

func testAuditVerifyEmpty(t *testing.T, s *store.Store) {
	if rep := verifyOK(t, s); rep.Records != 0 || rep.FirstBad != 0 {
		t.Errorf("VerifyAudit() on an empty log = %+v", rep)
	}
}

func testAuditVerifyAcrossPages(t *testing.T, s *store.Store) {
	fill(t, s, 2001) // two full pages of 1000 and one more
	if rep := verifyOK(t, s); rep.Records != 2001 {
		t.Errorf("VerifyAudit() Records = %d, want 2001", rep.Records)
	}
}

func testAuditTamperAltered(t *testing.T, s *store.Store) {
	fill(t, s, 1100)
	exec(t, s, "UPDATE audit_log SET actor = 'mallory' WHERE seq = 1050") // on the second page
	verifyBad(t, s, 1050, "record 1050 was altered (hash mismatch)")
}

func testAuditTamperDeleted(t *testing.T, s *store.Store) {
	fill(t, s, 10)
	exec(t, s, "DELETE FROM audit_log WHERE seq = 5")
	verifyBad(t, s, 5, "record 5 is missing (sequence jumps 4→6)")
}

func testAuditTamperDeletedFirst(t *testing.T, s *store.Store) {
	fill(t, s, 3)
	exec(t, s, "DELETE FROM audit_log WHERE seq = 1")
	verifyBad(t, s, 1, "record 1 is missing")
}

func testAuditTamperSwapped(t *testing.T, s *store.Store) {
	fill(t, s, 10)
	// Swap whole rows, hashes included, between positions 3 and 6.
	exec(t, s, "UPDATE audit_log SET seq = -1 WHERE seq = 3")
	exec(t, s, "UPDATE audit_log SET seq = 3 WHERE seq = 6")
	exec(t, s, "UPDATE audit_log SET seq = 6 WHERE seq = -1")
	verifyBad(t, s, 3, "record 3 was altered")
}

func testAuditTamperRehashed(t *testing.T, s *store.Store) {
	fill(t, s, 10)
	recs := auditLog(t, s)
	r := recs[3]
	r.Actor = "mallory"
	exec(t, s, "UPDATE audit_log SET actor = 'mallory', hash = ? WHERE seq = 4", store.AuditHash(&r))
	verifyBad(t, s, 5, "record 5 does not follow record 4 (prev_hash mismatch)")
}

func testAuditTamperDetail(t *testing.T, s *store.Store) {
	fill(t, s, 5)
	exec(t, s, "UPDATE audit_log SET detail = 'not json' WHERE seq = 2")
	verifyBad(t, s, 2, "record 2 was altered")
	exec(t, s, `UPDATE audit_log SET detail = '{"i":"2","b":"y"}' WHERE seq = 2`)
	verifyBad(t, s, 2, "record 2 was altered (hash mismatch)")
}

func testAuditConcurrentWriters(t *testing.T, s *store.Store) {
	const workers, each = 4, 6
	var wg sync.WaitGroup
	errc := make(chan error, workers*each)
	for w := range workers {
		wg.Go(func() {
			ctx := ctxFor(t)
			for i := range each {
				var err error
				switch i % 3 {
				case 0:
					_, err = s.CreateEntries(ctx, []store.Entry{entry(fmt.Sprintf("w%d-%d", w, i), "n1")}, false)
				case 1:
					err = s.AppendAudit(ctx, store.AuditRecord{Action: "svid.sign"}, store.AuditRecord{Action: "svid.sign"})
				case 2:
					_, err = s.CreateNode(ctx, node(fmt.Sprintf("w%d-%d", w, i)))
				}
				errc <- err
			}
		})
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		must(t, "concurrent write", err)
	}
	// Per worker: 2 entry creates, 2×2 appends, 2 node attests.
	if rep := verifyOK(t, s); rep.Records != workers*8 {
		t.Errorf("VerifyAudit() Records = %d, want %d", rep.Records, workers*8)
	}
}
