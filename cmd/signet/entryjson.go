package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sync/atomic"
	"time"

	"github.com/signet-id/signet/internal/apiconv"
	"github.com/signet-id/signet/internal/config"
	commonv1 "github.com/signet-id/signet/internal/gen/signet/common/v1"
	"github.com/signet-id/signet/internal/model"
)

// entryJSON is the CLI's JSON shape of an entry: what `entry list --json`
// prints and what `entry create --file` reads, so one feeds the other.
type entryJSON struct {
	ID            string            `json:"id,omitempty"`
	SPIFFEID      string            `json:"spiffe_id"`
	ParentID      string            `json:"parent_id"`
	Selectors     []string          `json:"selectors"`
	X509TTL       string            `json:"x509_ttl,omitempty"`
	JWTTTL        string            `json:"jwt_ttl,omitempty"`
	DNSNames      []string          `json:"dns_names,omitempty"`
	Admin         bool              `json:"admin,omitempty"`
	Downstream    bool              `json:"downstream,omitempty"`
	FederatesWith []string          `json:"federates_with,omitempty"`
	ExpiresAt     string            `json:"expires_at,omitempty"`
	Hint          string            `json:"hint,omitempty"`
	Labels        map[string]string `json:"labels,omitempty"`
	Revision      int64             `json:"revision,omitempty"`
	CreatedAt     string            `json:"created_at,omitempty"`
	UpdatedAt     string            `json:"updated_at,omitempty"`
	FirstIssuedAt string            `json:"first_issued_at,omitempty"`
	LastIssuedAt  string            `json:"last_issued_at,omitempty"`
	FirstServedAt string            `json:"first_served_at,omitempty"`
	LastServedAt  string            `json:"last_served_at,omitempty"`
}

func rfc3339(s int64) string {
	if s == 0 {
		return ""
	}
	return time.Unix(s, 0).UTC().Format(time.RFC3339)
}

func seconds(s int64) string {
	if s == 0 {
		return ""
	}
	return config.FormatDuration(time.Duration(s) * time.Second)
}

func entryToJSON(e *commonv1.Entry) entryJSON {
	sels := make([]string, len(e.GetSelectors()))
	for i, s := range e.GetSelectors() {
		sels[i] = s.GetType() + ":" + s.GetValue()
	}
	return entryJSON{
		ID: e.GetId(), SPIFFEID: e.GetSpiffeId(), ParentID: e.GetParentId(), Selectors: sels,
		X509TTL: seconds(e.GetX509TtlSeconds()), JWTTTL: seconds(e.GetJwtTtlSeconds()),
		DNSNames: e.GetDnsNames(), Admin: e.GetAdmin(), Downstream: e.GetDownstream(),
		FederatesWith: e.GetFederatesWith(), ExpiresAt: rfc3339(e.GetExpiresAt()), Hint: e.GetHint(),
		Labels: e.GetLabels(), Revision: e.GetRevision(), CreatedAt: rfc3339(e.GetCreatedAt()),
		UpdatedAt: rfc3339(e.GetUpdatedAt()), FirstIssuedAt: rfc3339(e.GetFirstIssuedAt()),
		LastIssuedAt: rfc3339(e.GetLastIssuedAt()), FirstServedAt: rfc3339(e.GetFirstServedAt()),
		LastServedAt: rfc3339(e.GetLastServedAt()),
	}
}

// toProto validates the JSON entry; errors name the field.
func (j *entryJSON) toProto() (*commonv1.Entry, error) {
	e := &commonv1.Entry{
		Id: j.ID, SpiffeId: j.SPIFFEID, ParentId: j.ParentID, DnsNames: j.DNSNames, Admin: j.Admin,
		Downstream: j.Downstream, FederatesWith: j.FederatesWith, Hint: j.Hint, Labels: j.Labels,
	}
	for i, d := range j.DNSNames {
		if err := checkDNSName(fmt.Sprintf("dns_names[%d]", i), d); err != nil {
			return nil, err
		}
	}
	for i, s := range j.Selectors {
		sel, err := model.ParseSelector(s)
		if err != nil {
			return nil, fmt.Errorf("selectors[%d]: %w", i, err)
		}
		e.Selectors = append(e.Selectors, &commonv1.Selector{Type: sel.Type, Value: sel.Value})
	}
	var err error
	if e.X509TtlSeconds, err = parseTTL("x509_ttl", j.X509TTL); err != nil {
		return nil, err
	}
	if e.JwtTtlSeconds, err = parseTTL("jwt_ttl", j.JWTTTL); err != nil {
		return nil, err
	}
	if j.ExpiresAt != "" {
		t, err := time.Parse(time.RFC3339, j.ExpiresAt)
		if err != nil {
			return nil, fmt.Errorf("expires_at %q: want an RFC 3339 time such as 2027-01-02T15:04:05Z", j.ExpiresAt)
		}
		e.ExpiresAt = t.Unix()
	}
	// Check locally what can be checked, so a bad file fails before any
	// network call, with the field named.
	se, err := apiconv.EntryFromProto(e)
	if err != nil {
		return nil, err
	}
	if err := se.Validate(); err != nil {
		return nil, err
	}
	return e, nil
}

// parseTTL parses a TTL flag or field (config.ParseDuration's syntax) into
// whole seconds; "" is zero (the server's default).
func parseTTL(field, s string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	d, err := config.ParseDuration(s)
	if err != nil || d <= 0 || d%time.Second != 0 {
		return 0, fmt.Errorf("%s %q: want a positive duration in whole seconds, written as %s", field, s, config.DurationForms)
	}
	return int64(d / time.Second), nil
}

// readEntriesFile reads entries from a JSON file ("-" is stdin): either an
// array of entries or an object {"entries": [...]}, as `entry list --json`
// prints. Unknown fields are errors. A document that does not parse fails
// as a whole; otherwise each entry is checked on its own: entries[i] is the
// converted entry, or, when invalid[i] is non-nil, a stand-in carrying only
// the entry's IDs for reports.
func readEntriesFile(path string) (entries []*commonv1.Entry, invalid []error, err error) {
	var r io.Reader = os.Stdin
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return nil, nil, fmt.Errorf("read entries: %w", err)
		}
		defer f.Close()
		r = f
	}
	entries, invalid, err = parseEntryStream(&limitedReader{r: r, left: maxEntriesFile})
	if err != nil {
		return nil, nil, fmt.Errorf("entries file %s: %w", path, err)
	}
	return entries, invalid, nil
}

// maxEntriesFile bounds what readEntriesFile reads.
const maxEntriesFile = 1 << 30

// limitedReader is io.LimitReader that fails past its limit instead of
// ending early, so a document too large is not reported as truncated.
type limitedReader struct {
	r    io.Reader
	left int64
}

func (l *limitedReader) Read(p []byte) (int, error) {
	if l.left <= 0 {
		// One byte past the limit tells a larger input from one that
		// ends exactly at it.
		var b [1]byte
		if n, _ := l.r.Read(b[:]); n > 0 {
			return 0, fmt.Errorf("the document is larger than %d MiB: split it", maxEntriesFile>>20)
		}
		return 0, io.EOF
	}
	if int64(len(p)) > l.left {
		p = p[:l.left]
	}
	n, err := l.r.Read(p)
	l.left -= int64(n)
	return n, err
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

// parseEntryItems parses an entries document and validates each entry on
// its own (see readEntriesFile). invalid is nil when every entry is valid.
// The document is a JSON array of entries or an object {"entries": [...]};
// it is read entry by entry, each converted as it is read, and must be
// well-formed as a whole before any entry is returned.
func parseEntryItems(data []byte) (entries []*commonv1.Entry, invalid []error, err error) {
	return parseEntryStream(bytes.NewReader(data))
}

// parseEntryStream is parseEntryItems reading the document from r, which
// it does not hold whole.
func parseEntryStream(r io.Reader) (entries []*commonv1.Entry, invalid []error, err error) {
	br := bufio.NewReaderSize(r, 64<<10)
	first, err := firstNonSpace(br)
	if err != nil {
		return nil, nil, err
	}
	dec := json.NewDecoder(br)
	dec.DisallowUnknownFields()
	if first == '{' {
		entries, invalid, err = decodeEntriesObject(dec)
	} else {
		entries, invalid, err = decodeEntryArray(dec, "")
	}
	if err != nil {
		return nil, nil, err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		if err != nil && !isSyntaxError(err) {
			return nil, nil, err // reading failed (or the document is too large)
		}
		return nil, nil, fmt.Errorf("unexpected data after the JSON value")
	}
	if len(entries) == 0 {
		return nil, nil, fmt.Errorf("no entries in the document")
	}
	return entries, invalid, nil
}

// firstNonSpace returns the first byte of br that is not JSON white
// space, without consuming it; 0 for a document of only white space.
func firstNonSpace(br *bufio.Reader) (byte, error) {
	for {
		b, err := br.Peek(1)
		if errors.Is(err, io.EOF) {
			return 0, nil
		}
		if err != nil {
			return 0, err
		}
		switch b[0] {
		case ' ', '\t', '\n', '\r':
			br.Discard(1)
			continue
		}
		return b[0], nil
	}
}

func isSyntaxError(err error) bool {
	var se *json.SyntaxError
	return errors.As(err, &se)
}

// decodeEntriesObject reads {"entries": [...]}, the object entry list
// --json prints; "entries" is its only key.
func decodeEntriesObject(dec *json.Decoder) (entries []*commonv1.Entry, invalid []error, err error) {
	if _, err := dec.Token(); err != nil { // the '{' parseEntryItems saw
		return nil, nil, truncated(err)
	}
	seen := false
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, nil, truncated(err)
		}
		if key, _ := tok.(string); key != "entries" {
			return nil, nil, fmt.Errorf("json: unknown field %q (the document's only key is \"entries\")", key)
		}
		if seen {
			return nil, nil, fmt.Errorf(`json: "entries" given twice`)
		}
		seen = true
		if entries, invalid, err = decodeEntryArray(dec, "entries"); err != nil {
			return nil, nil, err
		}
	}
	if _, err := dec.Token(); err != nil { // '}'
		return nil, nil, truncated(err)
	}
	return entries, invalid, nil
}

// decodeEntryArray reads a JSON array of entries, each converted while
// the next ones are read: the whole document (field "") or the value of
// its "entries" key, which may also be null.
func decodeEntryArray(dec *json.Decoder, field string) (entries []*commonv1.Entry, invalid []error, err error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, nil, truncated(err)
	}
	if tok == nil && field != "" {
		return nil, nil, nil
	}
	if d, ok := tok.(json.Delim); !ok || d != '[' {
		if field == "" {
			return nil, nil, fmt.Errorf(`want a JSON array of entries or {"entries": [...]}, not %s`, jsonKind(tok))
		}
		return nil, nil, fmt.Errorf("%s: want a JSON array of entries, not %s", field, jsonKind(tok))
	}
	conv := startConverting()
	for i := 0; dec.More(); i++ {
		j := new(entryJSON)
		if err := dec.Decode(j); err != nil {
			conv.stop()
			return nil, nil, fmt.Errorf("entry %d: %w", i, truncated(err))
		}
		conv.add(j)
	}
	if _, err := dec.Token(); err != nil { // ']'
		conv.stop()
		return nil, nil, truncated(err)
	}
	entries, invalid = conv.wait()
	return entries, invalid, nil
}

// converter converts and checks entries (toProto) on a goroutine of its
// own while the document is still being decoded, in chunks of
// convertChunk: decoding and checking take about as long as each other,
// and the file's entries are sent only once the whole document parsed, so
// the two overlap on a second CPU.
type converter struct {
	chunk   []*entryJSON
	chunks  chan []*entryJSON
	done    chan struct{}
	stopped atomic.Bool

	// Written by the goroutine, read after done is closed.
	entries    []*commonv1.Entry
	invalid    []error
	anyInvalid bool
}

const convertChunk = 256

func startConverting() *converter {
	c := &converter{chunks: make(chan []*entryJSON, 8), done: make(chan struct{})}
	go func() {
		defer close(c.done)
		for chunk := range c.chunks {
			if c.stopped.Load() {
				continue // the document failed: drain without work
			}
			for _, j := range chunk {
				e, err := j.toProto()
				if err != nil {
					c.anyInvalid = true
					e = &commonv1.Entry{Id: j.ID, SpiffeId: j.SPIFFEID, ParentId: j.ParentID}
				}
				c.entries, c.invalid = append(c.entries, e), append(c.invalid, err)
			}
		}
	}()
	return c
}

// add queues one decoded entry, which the caller no longer touches.
func (c *converter) add(j *entryJSON) {
	if c.chunk = append(c.chunk, j); len(c.chunk) == convertChunk {
		c.chunks <- c.chunk
		c.chunk = make([]*entryJSON, 0, convertChunk)
	}
}

// wait returns every entry added, converted, in order, and invalid as
// readEntriesFile describes it (nil when every entry is valid).
func (c *converter) wait() ([]*commonv1.Entry, []error) {
	if len(c.chunk) > 0 {
		c.chunks <- c.chunk
	}
	close(c.chunks)
	<-c.done
	if !c.anyInvalid {
		return c.entries, nil
	}
	return c.entries, c.invalid
}

// stop ends the conversion of a document that failed.
func (c *converter) stop() {
	c.stopped.Store(true)
	close(c.chunks)
	<-c.done
}

// truncated names the end of the document where a value was due.
func truncated(err error) error {
	if errors.Is(err, io.EOF) {
		return fmt.Errorf("the document ends too early: %w", io.ErrUnexpectedEOF)
	}
	return err
}

// jsonKind names the kind of JSON value a token starts, for messages.
func jsonKind(tok json.Token) string {
	switch tok.(type) {
	case json.Delim: // where a value starts, only '{' ('[' is an array)
		return "an object"
	case string:
		return "a string"
	case float64, json.Number:
		return "a number"
	case bool:
		return "a boolean"
	case nil:
		return "null"
	}
	return "a value"
}

func selectorsText(e *commonv1.Entry) string {
	out := make([]string, len(e.GetSelectors()))
	for i, s := range e.GetSelectors() {
		out[i] = s.GetType() + ":" + s.GetValue()
	}
	slices.Sort(out)
	return joinOrDash(out)
}

func joinOrDash(s []string) string {
	if len(s) == 0 {
		return "-"
	}
	out := s[0]
	for _, x := range s[1:] {
		out += "," + x
	}
	return out
}
