package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/signet-id/signet/internal/errkind"
)

// The audit log is a hash chain: each record's Hash is SHA-256 over a
// canonical encoding of its fields and of the previous record's hash, so
// altering, removing or reordering stored records breaks the chain at that
// point and VerifyAudit reports where. Truncating the newest records is not
// detectable from the database alone; compare the head (the last record's
// Hash) with a copy kept elsewhere for that.

// auditHashVersion separates this encoding from any future one.
const auditHashVersion = "signet.audit.v1"

// zeroHash is the PrevHash of the first record.
var zeroHash = make([]byte, 32)

// auditPage is how many records VerifyAudit reads at a time.
const auditPage = 1000

// AuditHash returns the chain hash of r: SHA-256 over the length-prefixed
// encoding of a version tag, Seq, Time as UTC unix nanoseconds, Actor,
// Action, Object, Detail sorted by key and PrevHash. Every field is preceded
// by its length (or, for Detail, its number of pairs), so distinct records
// never encode alike.
//
// The encoding is built in one buffer and hashed at once: the same bytes
// as the fieldWriter encoding entries use, at a fraction of the calls and
// allocations (every record of a signing batch is hashed on the write
// path, and again by VerifyAudit).
func AuditHash(r *AuditRecord) []byte {
	n := len(auditHashVersion) + len(r.Actor) + len(r.Action) + len(r.Object) + len(r.PrevHash) + 8*8
	for k, v := range r.Detail {
		n += len(k) + len(v) + 16
	}
	var stack [768]byte
	b := stack[:0]
	if n > len(stack) {
		b = make([]byte, 0, n)
	}
	b = appendField(b, auditHashVersion)
	b = binary.BigEndian.AppendUint64(b, uint64(r.Seq))
	b = binary.BigEndian.AppendUint64(b, uint64(r.Time.UnixNano()))
	b = appendField(b, r.Actor)
	b = appendField(b, r.Action)
	b = appendField(b, r.Object)
	b = binary.BigEndian.AppendUint64(b, uint64(len(r.Detail)))
	var keyStack [8]string
	keys := keyStack[:0]
	for k := range r.Detail {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		b = appendField(b, k)
		b = appendField(b, r.Detail[k])
	}
	b = appendField(b, r.PrevHash)
	sum := sha256.Sum256(b)
	return sum[:]
}

// appendField appends v preceded by its length, as fieldWriter writes it.
func appendField[T string | []byte](b []byte, v T) []byte {
	b = binary.BigEndian.AppendUint64(b, uint64(len(v)))
	return append(b, v...)
}

// AppendAudit appends recs to the audit log in one transaction, in order.
// The store assigns Seq, PrevHash and Hash, Time when zero and Actor, when
// empty, from the context (see WithActor). Action is required. recs itself
// is not modified; read the stored records back with ListAudit.
func (s *Store) AppendAudit(ctx context.Context, recs ...AuditRecord) error {
	for i := range recs {
		if recs[i].Action == "" {
			return errkind.New(errkind.InvalidArgument, "append audit: record %d has no action", i)
		}
	}
	if len(recs) == 0 {
		return nil
	}
	return s.update(ctx, "append audit", false, func(t *wtx) error {
		for _, r := range recs {
			if r.Time.IsZero() {
				r.Time = t.now
			}
			if r.Actor == "" {
				r.Actor = t.actor
			}
			t.audit = append(t.audit, AuditRecord{
				Time: normTime(r.Time), Actor: r.Actor, Action: r.Action, Object: r.Object,
				Detail: maps.Clone(r.Detail),
			})
		}
		return nil
	})
}

var auditCols = []string{"seq", "time", "actor", "action", "object", "detail", "prev_hash", "hash"}

// appendAuditTx chains and writes the audit records queued in t. The caller
// holds the revision row lock, so no other writer appends meanwhile.
func (s *Store) appendAuditTx(ctx context.Context, t *wtx) error {
	if len(t.audit) == 0 {
		return nil
	}
	var seq int64
	var prev []byte
	err := t.queryRow(ctx, "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1").Scan(&seq, &prev)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		seq, prev = 0, zeroHash
	case err != nil:
		return fmt.Errorf("read audit head: %w", err)
	}
	for i := range t.audit {
		r := &t.audit[i]
		seq++
		r.Seq, r.PrevHash = seq, prev
		r.Hash = AuditHash(r)
		prev = r.Hash
	}
	err = t.insertRows(ctx, "audit_log", auditCols, len(t.audit), func(i int, args []any) []any {
		r := &t.audit[i]
		return append(args, r.Seq, timeToDB(r.Time), r.Actor, r.Action, r.Object, auditDetailToDB(r.Detail), r.PrevHash, r.Hash)
	})
	if err != nil {
		return fmt.Errorf("write audit records: %w", err)
	}
	return nil
}

// auditDetailToDB is labelsToDB (encoding/json's encoding of the map) for
// a record's detail, without reflection when no key or value needs
// escaping, which is every record the signing path writes: the same
// bytes, keys in byte order.
func auditDetailToDB(m map[string]string) string {
	if len(m) == 0 {
		return "{}"
	}
	var keyStack [8]string
	keys := keyStack[:0]
	n := 1
	for k, v := range m {
		if !plainJSON(k) || !plainJSON(v) {
			return labelsToDB(m)
		}
		keys = append(keys, k)
		n += len(k) + len(v) + 6
	}
	slices.Sort(keys)
	var b strings.Builder
	b.Grow(n)
	b.WriteByte('{')
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteByte('"')
		b.WriteString(k)
		b.WriteString(`":"`)
		b.WriteString(m[k])
		b.WriteByte('"')
	}
	b.WriteByte('}')
	return b.String()
}

// plainJSON reports whether encoding/json writes s between quotes as it
// is: printable ASCII without '"', '\\' and the HTML-escaped '<', '>', '&'.
func plainJSON(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			return false
		}
	}
	return true
}

// AuditFilter selects audit records. Zero fields do not filter.
type AuditFilter struct {
	Since    time.Time // records at or after this time
	Actor    string
	Action   string
	AfterSeq int64 // records with a greater Seq (a cursor)
	Limit    int   // at most this many; 0 = all
}

// ListAudit returns the records f selects in ascending Seq order.
func (s *Store) ListAudit(ctx context.Context, f AuditFilter) ([]AuditRecord, error) {
	var where []string
	var args []any
	if !f.Since.IsZero() {
		where, args = append(where, "time >= ?"), append(args, timeToDB(f.Since))
	}
	if f.Actor != "" {
		where, args = append(where, "actor = ?"), append(args, f.Actor)
	}
	if f.Action != "" {
		where, args = append(where, "action = ?"), append(args, f.Action)
	}
	if f.AfterSeq > 0 {
		where, args = append(where, "seq > ?"), append(args, f.AfterSeq)
	}
	q := "SELECT " + strings.Join(auditCols, ", ") + " FROM audit_log"
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY seq"
	if f.Limit > 0 {
		q += " LIMIT ?"
		args = append(args, f.Limit)
	}
	rows, err := s.queryAudit(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list audit: %w", err)
	}
	recs := make([]AuditRecord, len(rows))
	for i := range rows {
		recs[i] = rows[i].AuditRecord
	}
	return recs, nil
}

// auditRow is a stored audit record and whether its detail column decoded.
type auditRow struct {
	AuditRecord
	badDetail bool // only tampering produces this; VerifyAudit reports it
}

func (s *Store) queryAudit(ctx context.Context, q string, args ...any) ([]auditRow, error) {
	rows, err := s.db.QueryContext(ctx, s.d.rebind(q), args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var recs []auditRow
	for rows.Next() {
		var r auditRow
		var t int64
		var detail string
		if err := rows.Scan(&r.Seq, &t, &r.Actor, &r.Action, &r.Object, &detail, &r.PrevHash, &r.Hash); err != nil {
			return nil, err
		}
		r.Time = timeFromDB(t)
		if err := json.Unmarshal([]byte(detail), &r.Detail); err != nil {
			r.badDetail = true
		}
		if len(r.Detail) == 0 {
			r.Detail = nil
		}
		recs = append(recs, r)
	}
	return recs, rows.Err()
}

// AuditReport is the outcome of VerifyAudit.
type AuditReport struct {
	Records  int64  // records examined, up to and including the first bad one
	OK       bool   // the whole chain is intact
	FirstBad int64  // Seq of the first record that fails verification; 0 when OK
	Problem  string // what is wrong with FirstBad, for operators; empty when OK
	// Head is the Hash of the last record examined; an operator who stores
	// it elsewhere can later detect truncation of the log's tail.
	Head []byte
}

// VerifyAudit walks the whole audit chain, a page at a time, and reports the
// first record that is missing, altered or out of place. An error means the
// log could not be read, not that it is broken.
func (s *Store) VerifyAudit(ctx context.Context) (AuditReport, error) {
	var rep AuditReport
	next, prev := int64(1), zeroHash
	q := "SELECT " + strings.Join(auditCols, ", ") + " FROM audit_log WHERE seq > ? ORDER BY seq LIMIT ?"
	for {
		page, err := s.queryAudit(ctx, q, next-1, auditPage)
		if err != nil {
			return AuditReport{}, fmt.Errorf("verify audit: %w", err)
		}
		for i := range page {
			r := &page[i]
			rep.Records++
			bad, problem := checkAuditRecord(r, next, prev)
			if bad != 0 {
				rep.FirstBad, rep.Problem = bad, problem
				return rep, nil
			}
			next, prev = r.Seq+1, r.Hash
			rep.Head = r.Hash
		}
		if len(page) < auditPage {
			rep.OK = true
			return rep, nil
		}
	}
}

// checkAuditRecord checks r, expected to be record want following a record
// whose hash is prev. It returns the bad sequence number and the problem, or
// 0 when r is sound.
func checkAuditRecord(r *auditRow, want int64, prev []byte) (int64, string) {
	switch {
	case r.Seq != want && want == 1:
		return want, fmt.Sprintf("record %d is missing (sequence starts at %d)", want, r.Seq)
	case r.Seq != want:
		return want, fmt.Sprintf("record %d is missing (sequence jumps %d→%d)", want, want-1, r.Seq)
	case r.badDetail:
		return r.Seq, fmt.Sprintf("record %d was altered (detail is not valid JSON)", r.Seq)
	case !bytes.Equal(AuditHash(&r.AuditRecord), r.Hash):
		return r.Seq, fmt.Sprintf("record %d was altered (hash mismatch)", r.Seq)
	case !bytes.Equal(r.PrevHash, prev):
		if r.Seq == 1 {
			return r.Seq, "record 1 does not start the chain (prev_hash is not zero)"
		}
		return r.Seq, fmt.Sprintf("record %d does not follow record %d (prev_hash mismatch)", r.Seq, r.Seq-1)
	}
	return 0, ""
}
