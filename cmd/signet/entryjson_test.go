package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/signet-id/signet/internal/apiconv"
)

func TestParseEntriesJSON(t *testing.T) {
	good := `{"entries":[{"spiffe_id":"spiffe://example.org/web","parent_id":"spiffe://example.org/node","selectors":["unix:uid:1000"],"x509_ttl":"1h","labels":{"owner":"web"}}]}`
	got, err := parseEntriesJSON([]byte(good))
	if err != nil || len(got) != 1 || got[0].GetX509TtlSeconds() != 3600 || got[0].GetLabels()["owner"] != "web" {
		t.Fatalf("parseEntriesJSON(good) = %v, %v", got, err)
	}
	// What `entry list --json` prints reads back.
	out, _ := json.Marshal(map[string]any{"entries": []entryJSON{entryToJSON(got[0])}})
	if _, err := parseEntriesJSON(out); err != nil {
		t.Fatalf("list --json output does not read back: %v", err)
	}
	for _, tt := range []struct{ in, want string }{
		{`[]`, "no entries"},
		{`[{"spiffe_id":"spiffe://example.org/a","parent_id":"spiffe://example.org/n","selectors":["x"]}]`, "entry 0 (spiffe://example.org/a): selectors[0]"},
		{`[{"spiffe_id":"spiffe://example.org/a","parent_id":"spiffe://example.org/n","selectors":["a:b"],"ttl":"1h"}]`, `unknown field "ttl"`},
		{`[{"spiffe_id":"spiffe://example.org/a","parent_id":"spiffe://example.org/n","selectors":["a:b"],"x509_ttl":"1.5s"}]`, "whole seconds"},
		{`{"entries": 5}`, "entries: want a JSON array of entries, not a number"},
		{`{"entries": [], "x": 1}`, `unknown field "x"`},
		{`{"entries": [], "entries": []}`, "given twice"},
		{`{"entries": null}`, "no entries"},
		{`[{"spiffe_id": 5}]`, "entry 0: json: cannot unmarshal number"},
		{`[{"spiffe_id":"spiffe://example.org/a"}`, "unexpected EOF"},
		{`[] []`, "unexpected data"},
	} {
		if _, err := parseEntriesJSON([]byte(tt.in)); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("parseEntriesJSON(%s) = %v, want error containing %q", tt.in, err, tt.want)
		}
	}
}

// FuzzParseEntriesJSON: entry files come from elsewhere; parsing never
// panics and whatever it accepts converts to a valid store entry.
func FuzzParseEntriesJSON(f *testing.F) {
	f.Add([]byte(`{"entries":[{"spiffe_id":"spiffe://example.org/web","parent_id":"spiffe://example.org/node","selectors":["unix:uid:1000"],"x509_ttl":"1h","expires_at":"2030-01-01T00:00:00Z"}]}`))
	f.Add([]byte(`[{"spiffe_id":"spiffe://a/b","parent_id":"spiffe://a/c","selectors":["a:b"],"dns_names":["x.y"]}]`))
	f.Add([]byte(`{`))
	f.Fuzz(func(t *testing.T, data []byte) {
		entries, err := parseEntriesJSON(data)
		if err != nil {
			return
		}
		for _, e := range entries {
			se, err := apiconv.EntryFromProto(e)
			if err != nil {
				t.Fatalf("accepted entry does not convert: %v", err)
			}
			if err := se.Validate(); err != nil {
				t.Fatalf("accepted entry is invalid: %v", err)
			}
		}
	})
}
