package store

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
	"time"
)

// auditHashFieldWriter is the chain hash as it was first written, through
// fieldWriter: the reference AuditHash must equal, or stored chains would
// no longer verify.
func auditHashFieldWriter(r *AuditRecord) []byte {
	w := newFieldWriter()
	w.string(auditHashVersion)
	w.uint(uint64(r.Seq))
	w.uint(uint64(r.Time.UnixNano()))
	w.string(r.Actor)
	w.string(r.Action)
	w.string(r.Object)
	w.stringMap(r.Detail)
	w.bytes(r.PrevHash)
	return w.sum()
}

// TestAuditHashEncoding: AuditHash is the fieldWriter encoding's hash for
// records of every shape (no detail, many keys, past the stack buffer),
// and a fixed record keeps its known hash.
func TestAuditHashEncoding(t *testing.T) {
	big := map[string]string{}
	for i := range 20 {
		big[fmt.Sprintf("k%02d", i)] = strings.Repeat("v", 100)
	}
	recs := map[string]*AuditRecord{
		"empty": {},
		"sign": {Seq: 12345, Time: time.Unix(1764729253, 123456789), Actor: "agent:spiffe://example.org/node/a", Action: "svid.x509.sign",
			Object: "0b9d7c4e", Detail: map[string]string{"spiffe_id": "spiffe://example.org/w", "node": "spiffe://example.org/node/a",
				"serial": "8f1e2d3c", "not_after": "2026-12-03T02:34:13Z"}, PrevHash: bytes.Repeat([]byte{7}, 32)},
		"big":       {Seq: 1, Actor: strings.Repeat("a", 1000), Detail: big, PrevHash: zeroHash},
		"nine-keys": {Seq: 2, Detail: map[string]string{"a": "", "b": "1", "c": "2", "d": "3", "e": "4", "f": "5", "g": "6", "h": "7", "i": "8"}},
	}
	for name, r := range recs {
		if got, want := AuditHash(r), auditHashFieldWriter(r); !bytes.Equal(got, want) {
			t.Errorf("AuditHash(%s) = %x, fieldWriter encoding gives %x", name, got, want)
		}
	}
	// Pinned: a change of encoding breaks every stored chain.
	const want = "c4aea8e552b9827f9e3c8f40ee05520613cd5e3a11670e69a517e6405c3c54ab"
	if got := hex.EncodeToString(AuditHash(recs["sign"])); got != want {
		t.Errorf("AuditHash(sign) = %s, want %s (the encoding stored chains were hashed with)", got, want)
	}
}

// FuzzAuditHash: AuditHash equals the fieldWriter encoding's hash.
func FuzzAuditHash(f *testing.F) {
	f.Add(int64(1), int64(0), "system", "entry.create", "id", "k", "v", "k2", "v2", []byte{})
	f.Add(int64(-5), int64(1<<62), "", "", "", "", "", "", "", bytes.Repeat([]byte{1}, 32))
	f.Fuzz(func(t *testing.T, seq, nanos int64, actor, action, object, k1, v1, k2, v2 string, prev []byte) {
		r := &AuditRecord{Seq: seq, Time: time.Unix(0, nanos), Actor: actor, Action: action, Object: object,
			Detail: map[string]string{k1: v1, k2: v2}, PrevHash: prev}
		if got, want := AuditHash(r), auditHashFieldWriter(r); !bytes.Equal(got, want) {
			t.Fatalf("AuditHash(%+v) = %x, fieldWriter encoding gives %x", r, got, want)
		}
	})
}

// TestAuditDetailToDB: the audit detail column is labelsToDB's encoding,
// byte for byte, for plain maps (the fast path) and for every kind of
// string encoding/json escapes (the fallback).
func TestAuditDetailToDB(t *testing.T) {
	for _, m := range []map[string]string{
		nil, {}, {"a": ""}, {"": "x"},
		{"spiffe_id": "spiffe://example.org/w", "node": "spiffe://example.org/node/a", "serial": "8f1e", "not_after": "2026-12-03T02:34:13Z"},
		{"b": "2", "a": "1", "aa": "0", "A": "9", "k1": "v", "k2": "v", "k3": "v", "k4": "v", "k5": "v", "k6": "v"},
		{"quote": `a"b`}, {"back": `a\b`}, {"html": "<a href='x'>&amp;</a>"}, {"ctl": "a\nb\tc\x01\x7f"},
		{"utf8": "grüße ✓"}, {"bad": "\xff\xfe"}, {"sep": "\u2028\u2029"}, {"k\n": "v"},
	} {
		if got, want := auditDetailToDB(m), labelsToDB(m); got != want {
			t.Errorf("auditDetailToDB(%q) = %s, labelsToDB gives %s", m, got, want)
		}
	}
}

// FuzzAuditDetailToDB: auditDetailToDB is labelsToDB for any map of up to
// three pairs.
func FuzzAuditDetailToDB(f *testing.F) {
	f.Add("node", "spiffe://example.org/node/a", "serial", "8f1e", "x", "<&>")
	f.Add("", "", "\xff", "\u2028", "a\"", "\\")
	f.Fuzz(func(t *testing.T, k1, v1, k2, v2, k3, v3 string) {
		m := map[string]string{k1: v1, k2: v2, k3: v3}
		if got, want := auditDetailToDB(m), labelsToDB(m); got != want {
			t.Fatalf("auditDetailToDB(%q) = %s, labelsToDB gives %s", m, got, want)
		}
	})
}
