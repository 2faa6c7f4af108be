package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"strconv"
	"strings"
	"sync"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"

	commonv1 "github.com/signet-id/signet/internal/gen/signet/common/v1"
	"github.com/signet-id/signet/internal/suggest"
)

// An entries document (`entry create --file`) is either an array of
// entries or an object {"entries": [...]}, as `entry list --json` prints.
// It is read in two steps, so that a batch of 100,000 entries is on its
// way to the server while most of it is still being decoded:
//
//   - scanEntryDoc checks the document as a whole (well-formed JSON of
//     that shape, at least one entry, nothing after it) and records where
//     each entry's text is. A document that fails here fails the command
//     before anything is sent. This step reads without decoding and takes
//     about a tenth of the time decoding does.
//   - entryDoc.feed decodes and checks each entry on its own (unknown
//     fields, a value of the wrong type, a bad SPIFFE ID or TTL …: that
//     entry's failure, named by field) on a goroutine of its own, while
//     the entries before it are being sent.

// entryDoc is an entries document that scanEntryDoc accepted.
type entryDoc struct {
	data  []byte
	spans [][2]int // where each entry's JSON text starts and ends in data
}

func (d *entryDoc) len() int { return len(d.spans) }

func (d *entryDoc) raw(i int) []byte { return d.data[d.spans[i][0]:d.spans[i][1]] }

// maxEntriesFile bounds what readEntriesDoc reads.
const maxEntriesFile = 1 << 30

// readEntriesDoc reads and scans an entries document from a file ("-" is
// stdin).
func readEntriesDoc(path string) (*entryDoc, error) {
	f := os.Stdin
	if path != "-" {
		var err error
		if f, err = os.Open(path); err != nil {
			return nil, fmt.Errorf("read entries: %w", err)
		}
		defer f.Close()
	}
	size := 0 // the file's size, when known, so it is read into one buffer
	if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() && fi.Size() < maxEntriesFile {
		size = int(fi.Size())
	}
	doc, err := readEntryDoc(&limitedReader{r: f, left: maxEntriesFile}, size)
	if err != nil {
		return nil, fmt.Errorf("entries file %s: %w", path, err)
	}
	return doc, nil
}

// readEntryDoc reads r to its end, into a buffer of size to begin with,
// and scans it.
func readEntryDoc(r io.Reader, size int) (*entryDoc, error) {
	buf := bytes.NewBuffer(make([]byte, 0, size+bytes.MinRead))
	if _, err := buf.ReadFrom(r); err != nil {
		return nil, err
	}
	return scanEntryDoc(buf.Bytes())
}

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

// scanEntryDoc checks that data is an entries document as a whole and
// records where each of its entries is; it does not decode them. data is
// held, not copied.
func scanEntryDoc(data []byte) (*entryDoc, error) {
	// A key given twice, in the document's object or in an entry, fails
	// the document (jsontext's default): which of the two is meant is
	// anybody's guess.
	dec := jsontext.NewDecoder(bytes.NewBuffer(data))
	doc := &entryDoc{data: data}
	var err error
	switch k := dec.PeekKind(); k {
	case '[':
		err = doc.scanArray(dec, "")
	case '{':
		err = doc.scanObject(dec)
	case 0:
		if _, err = dec.ReadToken(); errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, errors.New(`no entries in the document: it is empty (want a JSON array of entries or {"entries": [...]})`)
		}
	default:
		err = fmt.Errorf(`want a JSON array of entries or {"entries": [...]}, not %s`, kindName(k))
	}
	if err != nil {
		return nil, jsonErr(err)
	}
	if dec.PeekKind() != 0 {
		return nil, errors.New("unexpected data after the JSON value")
	}
	if _, err := dec.ReadToken(); !errors.Is(err, io.EOF) {
		return nil, jsonErr(err) // white space, then something that is not JSON
	}
	if doc.len() == 0 {
		return nil, errors.New("no entries in the document")
	}
	return doc, nil
}

// scanObject reads {"entries": [...]}; "entries" is its only key, and its
// value may be null.
func (d *entryDoc) scanObject(dec *jsontext.Decoder) error {
	if _, err := dec.ReadToken(); err != nil { // '{'
		return err
	}
	for dec.PeekKind() == '"' {
		tok, err := dec.ReadToken()
		if err != nil {
			return err
		}
		if key := tok.String(); key != "entries" {
			return fmt.Errorf("unknown field %q (the document's only key is \"entries\")", key)
		}
		if dec.PeekKind() == 'n' {
			if _, err := dec.ReadToken(); err != nil {
				return err
			}
			continue
		}
		if err := d.scanArray(dec, "entries"); err != nil {
			return err
		}
	}
	_, err := dec.ReadToken() // '}', or the error of what is there instead
	return err
}

// scanArray reads a JSON array of entries: the whole document (field "")
// or the value of its "entries" key.
func (d *entryDoc) scanArray(dec *jsontext.Decoder, field string) error {
	if k := dec.PeekKind(); k != '[' {
		if k == 0 {
			_, err := dec.ReadToken()
			return err
		}
		return fmt.Errorf("%s: want a JSON array of entries, not %s", field, kindName(k))
	}
	if _, err := dec.ReadToken(); err != nil {
		return err
	}
	for dec.PeekKind() != ']' {
		v, err := dec.ReadValue()
		if err != nil {
			return err
		}
		end := int(dec.InputOffset())
		d.spans = append(d.spans, [2]int{end - len(v), end})
	}
	_, err := dec.ReadToken() // ']'
	return err
}

// jsonErr words an error of the document's scan: a document cut short
// says so.
func jsonErr(err error) error {
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("the document ends too early: %w", io.ErrUnexpectedEOF)
	}
	return err
}

// kindName names the kind of JSON value a token starts, for messages.
func kindName(k jsontext.Kind) string {
	switch k {
	case '{':
		return "an object"
	case '[':
		return "an array"
	case '"':
		return "a string"
	case '0':
		return "a number"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	}
	return "a value"
}

// entryJSONOptions decode an entry: a field is named exactly as `entry
// list --json` prints it, and any other name is an error. (json's
// case-insensitive matching would also ignore underscores, taking a
// misspelt "x509ttl" for x509_ttl.)
var entryJSONOptions = json.JoinOptions(json.RejectUnknownMembers(true), json.MatchCaseInsensitiveNames(false))

// decodeEntry decodes and checks one entry of a scanned document. When
// it fails, the entry returned is a stand-in carrying what could be read
// of its IDs, for reports.
func decodeEntry(raw []byte) (*commonv1.Entry, error) {
	if k := jsontext.Value(raw).Kind(); k != '{' {
		return &commonv1.Entry{}, fmt.Errorf("want an object, not %s", kindName(k))
	}
	var j entryJSON
	if err := json.Unmarshal(raw, &j, entryJSONOptions); err != nil {
		return standIn(raw), fieldErr(err)
	}
	e, err := j.toProto()
	if err != nil {
		return &commonv1.Entry{Id: j.ID, SpiffeId: j.SPIFFEID, ParentId: j.ParentID}, err
	}
	return e, nil
}

// standIn reads what it can of the IDs of an entry that did not decode,
// for the report of its failure.
func standIn(raw []byte) *commonv1.Entry {
	e := &commonv1.Entry{}
	dec := jsontext.NewDecoder(bytes.NewReader(raw))
	if _, err := dec.ReadToken(); err != nil { // '{'
		return e
	}
	for dec.PeekKind() == '"' {
		tok, err := dec.ReadToken()
		if err != nil {
			return e
		}
		name := tok.String() // a token lasts until the next read
		v, err := dec.ReadValue()
		if err != nil {
			return e
		}
		var s string
		if v.Kind() != '"' || json.Unmarshal(v, &s) != nil {
			continue
		}
		switch name {
		case "id":
			e.Id = s
		case "spiffe_id":
			e.SpiffeId = s
		case "parent_id":
			e.ParentId = s
		}
	}
	return e
}

// fieldErr words a decoding error of an entry by the field's name and the
// JSON it accepts, not by Go types.
func fieldErr(err error) error {
	var se *json.SemanticError
	if !errors.As(err, &se) {
		return err
	}
	field := fieldName(se.JSONPointer)
	switch {
	case errors.Is(se.Err, json.ErrUnknownName):
		return unknownField(field)
	case se.GoType != nil && se.JSONKind != 0:
		got := kindName(se.JSONKind)
		if se.JSONKind == '0' && len(se.JSONValue) > 0 && len(se.JSONValue) <= 32 {
			got = string(se.JSONValue) // 1.5 for a whole number
		}
		return fmt.Errorf("%s: want %s, not %s", field, jsonKindOf(se.GoType), got)
	case se.Err != nil:
		return fmt.Errorf("%s: %w", field, se.Err)
	}
	return err
}

// unknownField is the error for a field an entry does not have: with the
// field meant when the name differs from one only in case, underscores or
// dashes or is a near miss of one, else with the fields there are.
func unknownField(name string) error {
	fold := func(s string) string { return strings.ToLower(strings.NewReplacer("_", "", "-", "").Replace(s)) }
	for _, f := range entryFields {
		if fold(f) == fold(name) {
			return fmt.Errorf("unknown field %q: did you mean %q?", name, f)
		}
	}
	if f := suggest.Closest(name, entryFields); f != "" {
		return fmt.Errorf("unknown field %q: did you mean %q?", name, f)
	}
	return fmt.Errorf("unknown field %q: an entry's fields are %s", name, strings.Join(entryFields, ", "))
}

// entryFields are the JSON names of entryJSON's fields, in order.
var entryFields = func() []string {
	t := reflect.TypeFor[entryJSON]()
	names := make([]string, 0, t.NumField())
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		names = append(names, name)
	}
	return names
}()

// fieldName writes a JSON pointer within an entry as the CLI names
// fields: selectors[2], labels["team"].
func fieldName(p jsontext.Pointer) string {
	var b strings.Builder
	for tok := range p.Tokens() {
		switch {
		case b.Len() == 0:
			b.WriteString(tok)
		case tok != "" && strings.Trim(tok, "0123456789") == "":
			b.WriteString("[" + tok + "]")
		default:
			b.WriteString("[" + strconv.Quote(tok) + "]")
		}
	}
	return b.String()
}

// jsonKindOf names the JSON that decodes into a field of type t.
func jsonKindOf(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int64:
		return "a whole number"
	case reflect.Slice:
		return "an array of " + plural(t.Elem())
	case reflect.Map:
		return "an object of " + plural(t.Elem())
	}
	return "a " + t.Kind().String()
}

func plural(t reflect.Type) string {
	if t.Kind() == reflect.String {
		return "strings"
	}
	return "values"
}

// convertChunk is how many entries the feed hands on at a time.
const convertChunk = 500

// entryFeed hands on entries in the order of their document, each decoded
// and checked, in chunks; its channel is closed after the last chunk, or
// early when the context the feed was started with is done.
type entryFeed struct {
	n      int // entries in the document
	chunks <-chan feedChunk
	ctx    context.Context
	stop   context.CancelFunc // ends the feed's goroutine early
}

// feedChunk is the entries from index first on: entries[k] is converted,
// or, when invalid is non-nil and invalid[k] is set, a stand-in for the
// entry that failed with that error.
type feedChunk struct {
	first   int
	entries []*commonv1.Entry
	invalid []error
}

// feed decodes and checks the document's entries on a goroutine of its
// own, a few chunks ahead of the reader, until ctx is done.
func (d *entryDoc) feed(ctx context.Context) *entryFeed {
	ctx, stop := context.WithCancel(ctx)
	ch := make(chan feedChunk, 4)
	go func() {
		defer close(ch)
		for first := 0; first < d.len(); first += convertChunk {
			c := feedChunk{first: first, entries: make([]*commonv1.Entry, min(convertChunk, d.len()-first))}
			for k := range c.entries {
				e, err := decodeEntry(d.raw(first + k))
				if err != nil {
					if c.invalid == nil {
						c.invalid = make([]error, len(c.entries))
					}
					c.invalid[k] = err
				}
				c.entries[k] = e
			}
			select {
			case ch <- c:
			case <-ctx.Done():
				return
			}
		}
	}()
	return &entryFeed{n: d.len(), chunks: ch, ctx: ctx, stop: stop}
}

// sliceFeed is a feed of entries already checked.
func sliceFeed(entries []*commonv1.Entry) *entryFeed {
	ch := make(chan feedChunk, 1)
	ch <- feedChunk{entries: entries}
	close(ch)
	return &entryFeed{n: len(entries), chunks: ch, ctx: context.Background(), stop: func() {}}
}

// feedLog is what createEntries has taken from a feed so far: the valid
// entries in document order, each with its index in the document. The
// goroutine that sends entries adds them before it sends them; the one
// that reads the server's answers looks them up.
type feedLog struct {
	mu      sync.Mutex
	entries []*commonv1.Entry
	index   []int
}

// add adds entries whose indexes in the document are index, or, when
// index is nil, first, first+1 ….
func (l *feedLog) add(entries []*commonv1.Entry, index []int, first int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.entries = append(l.entries, entries...)
	if index != nil {
		l.index = append(l.index, index...)
		return
	}
	for k := range entries {
		l.index = append(l.index, first+k)
	}
}

// sent returns the entries added so far; entries added later do not
// change the slice returned.
func (l *feedLog) sent() []*commonv1.Entry {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.entries
}

func (l *feedLog) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.entries)
}
