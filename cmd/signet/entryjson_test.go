package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/signet-id/signet/internal/apiconv"
	commonv1 "github.com/signet-id/signet/internal/gen/signet/common/v1"
)

func TestParseEntriesJSON(t *testing.T) {
	good := `{"entries":[{"spiffe_id":"spiffe://example.org/web","parent_id":"spiffe://example.org/node","selectors":["unix:uid:1000"],"x509_ttl":"1h","labels":{"owner":"web"}}]}`
	got, err := parseEntriesJSON([]byte(good))
	if err != nil || len(got) != 1 || got[0].GetX509TtlSeconds() != 3600 || got[0].GetLabels()["owner"] != "web" {
		t.Fatalf("parseEntriesJSON(good) = %v, %v", got, err)
	}
	// Field names are exact: another case or a missing underscore is an
	// unknown field, not a near match.
	for _, name := range []string{`"SPIFFE_ID"`, `"spiffeid"`, `"spiffe-id"`} {
		_, err := parseEntriesJSON([]byte(strings.ReplaceAll(good, `"spiffe_id"`, name)))
		if err == nil || !strings.Contains(err.Error(), "unknown field "+name+`: did you mean "spiffe_id"?`) {
			t.Errorf("parseEntriesJSON(%s) = %v, want unknown field %s and the field meant", name, err, name)
		}
	}
	// A name like no field's lists the fields there are.
	if _, err := parseEntriesJSON([]byte(strings.ReplaceAll(good, `"x509_ttl"`, `"ttl"`))); err == nil ||
		!strings.Contains(err.Error(), `unknown field "ttl": an entry's fields are id, spiffe_id, parent_id, selectors, x509_ttl, jwt_ttl`) {
		t.Errorf("parseEntriesJSON(ttl) = %v, want the fields listed", err)
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
		{`[{"spiffe_id":"spiffe://example.org/a","parent_id":"spiffe://example.org/n","selectors":["a:b"],"x509ttl":"1h"}]`, `unknown field "x509ttl": did you mean "x509_ttl"?`},
		{`[{"spiffe_id":"spiffe://example.org/a","parent_id":"spiffe://example.org/n","selector":["a:b"]}]`, `unknown field "selector": did you mean "selectors"?`},
		{`[{"spiffe_id":"spiffe://example.org/a","parent_id":"spiffe://example.org/n","selectors":["a:b"],"federate_with":["x.org"]}]`, `unknown field "federate_with": did you mean "federates_with"?`},
		{`[{"spiffe_id":"spiffe://example.org/a","parent_id":"spiffe://example.org/n","selectors":["a:b"],"x509_ttl":"1.5s"}]`, "whole seconds"},
		{`{"entries": 5}`, "entries: want a JSON array of entries, not a number"},
		{`{"entries": [], "x": 1}`, `unknown field "x"`},
		{`{"entries": [], "entries": []}`, `duplicate object member name "entries"`},
		{`{"entries": null}`, "no entries"},
		{`[{"spiffe_id": 5}]`, "entry 0 (): spiffe_id: want a string, not a number"},
		{`[{"spiffe_id":"spiffe://example.org/a","selectors":"a:b"}]`, "entry 0 (spiffe://example.org/a): selectors: want an array of strings, not a string"},
		{`[5]`, "entry 0 (): want an object, not a number"},
		{`[{"spiffe_id":"spiffe://example.org/a","parent_id":"spiffe://example.org/n","selectors":[5]}]`,
			"entry 0 (spiffe://example.org/a): selectors[0]: want a string, not a number"},
		{`[{"spiffe_id":"spiffe://example.org/a","selectors":["a:b"],"labels":{"team":5}}]`, `labels["team"]: want a string, not a number`},
		{`[{"spiffe_id":"spiffe://example.org/a","admin":"yes"}]`, "admin: want true or false, not a string"},
		{`[{"spiffe_id":"spiffe://example.org/a","revision":1.5}]`, "revision: want a whole number, not 1.5"},
		{``, "no entries"},
		{`"x"`, `want a JSON array of entries or {"entries": [...]}, not a string`},
		{`[] x`, "unexpected data"},
		{"[]\n", "no entries"},
		{" \n\t", "it is empty"},
		{`{"entries": [{"spiffe_id": "a", "spiffe_id": "b"}]}`, "duplicate"},
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

// TestParseEntryItemsAcrossChunks: entries are converted on a second
// goroutine in chunks; the results keep the document's order, each
// invalid entry is reported at its own index across chunk boundaries
// (a value of the wrong type too), and a document that is not well-formed
// after several chunks fails as a whole.
func TestParseEntryItemsAcrossChunks(t *testing.T) {
	const n = 3*convertChunk + 7
	bad := map[int]bool{0: true, convertChunk - 1: true, convertChunk: true, n - 1: true}
	items := make([]string, n)
	for i := range items {
		sel := "unix:uid:1000"
		if bad[i] {
			sel = "no-colon"
		}
		items[i] = fmt.Sprintf(`{"spiffe_id":"spiffe://example.org/w/%d","parent_id":"spiffe://example.org/node","selectors":[%q]}`, i, sel)
	}
	doc := "[" + strings.Join(items, ",") + "]"
	entries, invalid, err := parseEntryItems([]byte(doc))
	if err != nil || len(entries) != n || len(invalid) != n {
		t.Fatalf("parseEntryItems = %d entries, %d invalid, %v", len(entries), len(invalid), err)
	}
	for i, e := range entries {
		if want := fmt.Sprintf("spiffe://example.org/w/%d", i); e.GetSpiffeId() != want {
			t.Fatalf("entry %d is %s, want %s", i, e.GetSpiffeId(), want)
		}
		if (invalid[i] != nil) != bad[i] {
			t.Errorf("entry %d: invalid = %v, want invalid %v", i, invalid[i], bad[i])
		}
	}
	// Valid throughout: invalid is nil.
	good := strings.ReplaceAll(doc, `"no-colon"`, `"unix:uid:1"`)
	if entries, invalid, err := parseEntryItems([]byte(good)); err != nil || len(entries) != n || invalid != nil {
		t.Fatalf("parseEntryItems(good) = %d entries, invalid %v, %v", len(entries), invalid, err)
	}
	// A value of the wrong type in the last chunk fails that entry.
	wrong := strings.Replace(good, fmt.Sprintf(`"spiffe://example.org/w/%d"`, n-2), "5", 1)
	entries, invalid, err = parseEntryItems([]byte(wrong))
	if err != nil || len(invalid) != n || invalid[n-2] == nil || !strings.Contains(invalid[n-2].Error(), "spiffe_id: want a string, not a number") {
		t.Fatalf("parseEntryItems(wrong type) = %v, want entry %d's own error", err, n-2)
	}
	if entries[n-2].GetParentId() != "spiffe://example.org/node" || invalid[n-1] != nil {
		t.Fatalf("entry %d's stand-in = %v, want its parent ID; entry %d invalid = %v", n-2, entries[n-2], n-1, invalid[n-1])
	}
	// A syntax error in the last chunk fails the document.
	broken := strings.Replace(good, fmt.Sprintf(`"spiffe://example.org/w/%d"`, n-2), "x", 1)
	if _, _, err := parseEntryItems([]byte(broken)); err == nil || !strings.Contains(err.Error(), "invalid character") {
		t.Fatalf("parseEntryItems(broken) = %v, want a syntax error", err)
	}
	if _, _, err := parseEntryItems([]byte(good[:len(good)-1])); err == nil || !strings.Contains(err.Error(), "ends too early") {
		t.Fatalf("parseEntryItems(truncated) = %v", err)
	}
}

// TestEntriesFileLimit: the reader of an entries file fails past its
// limit with a message that says so, not as a truncated document.
func TestEntriesFileLimit(t *testing.T) {
	doc := `[{"spiffe_id":"spiffe://example.org/a","parent_id":"spiffe://example.org/n","selectors":["a:b"]}]`
	if _, err := readEntryDoc(&limitedReader{r: strings.NewReader(doc), left: int64(len(doc))}, 0); err != nil {
		t.Fatalf("a document of exactly the limit: %v", err)
	}
	_, err := readEntryDoc(&limitedReader{r: strings.NewReader(doc + "\n"), left: int64(len(doc))}, 0)
	if err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("a document past the limit: %v, want a too-large error", err)
	}
	_, err = readEntryDoc(&limitedReader{r: strings.NewReader(doc), left: 10}, 0)
	if err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("a document cut by the limit: %v, want a too-large error", err)
	}
}

// TestEntriesFromStdin: "-" reads the document from standard input, which
// has no size to read it by (a pipe).
func TestEntriesFromStdin(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	old := os.Stdin
	os.Stdin = r
	t.Cleanup(func() { os.Stdin = old; r.Close() })
	doc := `[{"spiffe_id":"spiffe://example.org/a","parent_id":"spiffe://example.org/n","selectors":["a:b"]},` +
		`{"spiffe_id":"spiffe://example.org/b","parent_id":"spiffe://example.org/n","selectors":["a:c"]}]`
	go func() {
		// Written in pieces, as a producer on a pipe would.
		for i := 0; i < len(doc); i += 7 {
			w.WriteString(doc[i:min(i+7, len(doc))])
		}
		w.Close()
	}()
	d, err := readEntriesDoc("-")
	if err != nil || d.len() != 2 || string(d.raw(1)) != doc[strings.Index(doc, `},{`)+2:len(doc)-1] {
		t.Fatalf("readEntriesDoc(-) = %v, %v", d, err)
	}
}

// parseEntryItems scans and decodes a whole entries document, as the
// command does while it sends (tests read the result at once): entries[i]
// is the converted entry, or, when invalid[i] is set, the stand-in of an
// entry that failed on its own. invalid is nil when every entry is valid.
func parseEntryItems(data []byte) (entries []*commonv1.Entry, invalid []error, err error) {
	doc, err := scanEntryDoc(data)
	if err != nil {
		return nil, nil, err
	}
	entries, invalid = make([]*commonv1.Entry, doc.len()), make([]error, doc.len())
	anyInvalid := false
	feed := doc.feed(context.Background())
	defer feed.stop()
	for c := range feed.chunks {
		copy(entries[c.first:], c.entries)
		if c.invalid != nil {
			copy(invalid[c.first:], c.invalid)
			anyInvalid = true
		}
	}
	if !anyInvalid {
		invalid = nil
	}
	return entries, invalid, nil
}

// parseEntriesJSON parses and validates an entries document; the first
// invalid entry fails it.
func parseEntriesJSON(data []byte) ([]*commonv1.Entry, error) {
	entries, invalid, err := parseEntryItems(data)
	if err != nil {
		return nil, err
	}
	for i, err := range invalid {
		if err != nil {
			return nil, fmt.Errorf("entry %d (%s): %w", i, entries[i].GetSpiffeId(), err)
		}
	}
	return entries, nil
}
