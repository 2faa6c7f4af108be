package store_test

import (
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/signet-id/signet/internal/cputime"
	"github.com/signet-id/signet/internal/model"
	"github.com/signet-id/signet/internal/store"
	"github.com/signet-id/signet/internal/store/storetest"
)

// benchRecordIssuance records batches of 500 signed X509-SVIDs shaped as
// the agent API's SignX509SVIDs hands them over (one audit record, one
// binding and one issued entry each) and reports the process CPU time per
// SVID (with PostgreSQL: the client side only).
func benchRecordIssuance(b *testing.B, s *store.Store) {
	const batch = 500
	entries := benchEntries(b, batch)
	node := entries[0].ParentID.String()
	for i := range entries {
		entries[i].ParentID = entries[0].ParentID
	}
	res, err := s.CreateEntries(b.Context(), entries, true)
	if err != nil {
		b.Fatal(err)
	}
	ctx := store.WithActor(b.Context(), "agent:"+node)
	notAfter := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	b.ReportAllocs()
	var cpu time.Duration
	n := 0
	b.ResetTimer()
	for b.Loop() {
		b.StopTimer()
		iss := store.Issuance{At: time.Now()}
		for _, r := range res {
			e := r.Entry
			serial := strconv.FormatUint(uint64(n)*0x9e3779b97f4a7c15|1<<63, 16) + "0123456789abcdef"
			n++
			iss.Issued = append(iss.Issued, e.ID)
			iss.Bindings = append(iss.Bindings, store.SVIDBinding{Digest: model.SVIDDigest([]byte(serial)), EntryID: e.ID,
				NodeID: node, ExpiresAt: notAfter, Serial: serial, SPIFFEID: e.SPIFFEID.String()})
			iss.Records = append(iss.Records, model.AuditRecord{Action: "svid.x509.sign", Object: e.ID,
				Detail: map[string]string{"spiffe_id": e.SPIFFEID.String(), "node": node,
					"serial": serial, "not_after": notAfter.Format(time.RFC3339)}})
		}
		b.StartTimer()
		c0 := cputime.Now()
		if err := s.RecordIssuance(ctx, iss); err != nil {
			b.Fatalf("RecordIssuance() = %v", err)
		}
		cpu += cputime.Now() - c0
	}
	b.StopTimer()
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N*batch), "cpu-ns/svid")
	rep, err := s.VerifyAudit(b.Context())
	if err != nil || !rep.OK {
		b.Fatalf("VerifyAudit() = %+v, %v", rep, err)
	}
	if want := int64(batch + b.N*batch); rep.Records != want {
		b.Fatalf("VerifyAudit() examined %d records, want %d", rep.Records, want)
	}
}

// BenchmarkRecordIssuance500 measures the store's half of signing a batch
// of 500 X509-SVIDs:
//
//	go test -run '^$' -bench RecordIssuance500 -benchtime 200x ./internal/store/
func BenchmarkRecordIssuance500(b *testing.B) {
	b.Run("sqlite", func(b *testing.B) {
		benchRecordIssuance(b, openSQLite(b, filepath.Join(b.TempDir(), "signet.db")))
	})
	b.Run("postgres", func(b *testing.B) {
		benchRecordIssuance(b, openPostgres(b, storetest.PostgresDSN(b)))
	})
}
