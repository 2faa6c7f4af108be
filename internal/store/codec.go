package store

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash"
	"io"
	"maps"
	"slices"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Columns hold times as BIGINT unix nanoseconds (UTC), 0 for the zero time,
// and durations as BIGINT nanoseconds, so values round-trip exactly on every
// backend. Lists and maps are JSON text.

// normTime drops t's location and monotonic reading so that it equals its
// own round trip through the database.
func normTime(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return time.Unix(0, t.UnixNano()).UTC()
}

func timeToDB(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func timeFromDB(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

func durationFromDB(n int64) time.Duration { return time.Duration(n) }

func jsonText(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		// Only strings, string maps and selector slices are encoded here.
		panic(fmt.Sprintf("store: encode %T: %v", v, err))
	}
	return string(b)
}

func selectorsToDB(sels []Selector) string {
	if len(sels) == 0 {
		return "[]"
	}
	return jsonText(sels)
}

func selectorsFromDB(s string) ([]Selector, error) {
	var sels []Selector
	if err := json.Unmarshal([]byte(s), &sels); err != nil {
		return nil, fmt.Errorf("decode selectors: %w", err)
	}
	if len(sels) == 0 {
		return nil, nil
	}
	return sels, nil
}

func stringsToDB(ss []string) string {
	if len(ss) == 0 {
		return "[]"
	}
	return jsonText(ss)
}

func stringsFromDB(s string) ([]string, error) {
	var ss []string
	if err := json.Unmarshal([]byte(s), &ss); err != nil {
		return nil, fmt.Errorf("decode string list: %w", err)
	}
	if len(ss) == 0 {
		return nil, nil
	}
	return ss, nil
}

func labelsToDB(m map[string]string) string {
	if len(m) == 0 {
		return "{}"
	}
	return jsonText(m)
}

func labelsFromDB(s string) (map[string]string, error) {
	var m map[string]string
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		return nil, fmt.Errorf("decode labels: %w", err)
	}
	if len(m) == 0 {
		return nil, nil
	}
	return m, nil
}

func trustDomainsToDB(tds []spiffeid.TrustDomain) string {
	ss := make([]string, len(tds))
	for i, td := range tds {
		ss[i] = td.Name()
	}
	return stringsToDB(ss)
}

func trustDomainsFromDB(s string) ([]spiffeid.TrustDomain, error) {
	ss, err := stringsFromDB(s)
	if err != nil || len(ss) == 0 {
		return nil, err
	}
	tds := make([]spiffeid.TrustDomain, len(ss))
	for i, name := range ss {
		if tds[i], err = spiffeid.TrustDomainFromString(name); err != nil {
			return nil, fmt.Errorf("decode federates_with: %w", err)
		}
	}
	return tds, nil
}

func idToDB(id spiffeid.ID) string {
	if id.IsZero() {
		return ""
	}
	return id.String()
}

func idFromDB(s string) (spiffeid.ID, error) {
	if s == "" {
		return spiffeid.ID{}, nil
	}
	id, err := spiffeid.FromString(s)
	if err != nil {
		return spiffeid.ID{}, fmt.Errorf("decode spiffe id %q: %w", s, err)
	}
	return id, nil
}

// fieldWriter writes length-prefixed fields to a hash, so that no two
// different field sequences produce the same byte stream.
type fieldWriter struct {
	h   hash.Hash
	buf [8]byte
}

func newFieldWriter() *fieldWriter { return &fieldWriter{h: sha256.New()} }

func (w *fieldWriter) uint(v uint64) {
	binary.BigEndian.PutUint64(w.buf[:], v)
	w.h.Write(w.buf[:])
}

func (w *fieldWriter) bytes(b []byte) {
	w.uint(uint64(len(b)))
	w.h.Write(b)
}

func (w *fieldWriter) string(s string) {
	w.uint(uint64(len(s)))
	_, _ = io.WriteString(w.h, s)
}

// stringMap writes m's entries sorted by key, preceded by their count.
func (w *fieldWriter) stringMap(m map[string]string) {
	w.uint(uint64(len(m)))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		w.string(k)
		w.string(m[k])
	}
}

func (w *fieldWriter) sum() []byte { return w.h.Sum(nil) }
