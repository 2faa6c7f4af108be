// Package credtemplate renders brokered credentials through Go
// text/template: the helper's credentials[].template files, the
// environment of `signet exec` and the gateway's egress inject.format.
//
// A template is parsed once, when its configuration is loaded, with
// missingkey=error, so a field the credential lacks is an error naming the
// field and the fields the credential has, never "<no value>" in a file or
// a header. The fields are the credential's data keys (username, password,
// value, access_token, ...) plus lease_id, credential and expires_at.
package credtemplate

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"text/template"
)

// MaxOutput bounds what one Execute may produce.
const MaxOutput = 1 << 20

// The fields every credential has besides its data.
const (
	FieldLeaseID    = "lease_id"
	FieldCredential = "credential"
	FieldExpiresAt  = "expires_at"
)

// Template is a parsed credential template. It is safe for concurrent use.
type Template struct {
	name string
	t    *template.Template
}

// Parse parses text as a template; name says where it came from
// ("credentials[0].template", "--env PGPASSWORD") and prefixes errors.
func Parse(name, text string) (*Template, error) {
	t, err := template.New(name).Option("missingkey=error").Parse(text)
	if err != nil {
		// text/template's message already starts with the name and line.
		return nil, errors.New(strings.TrimPrefix(err.Error(), "template: "))
	}
	return &Template{name: name, t: t}, nil
}

// Must is Parse for templates known to be valid; it panics otherwise.
func Must(name, text string) *Template {
	t, err := Parse(name, text)
	if err != nil {
		panic(err)
	}
	return t
}

// Name is the name given to Parse.
func (t *Template) Name() string { return t.name }

// Fields is the template data of one credential: its data keys plus
// lease_id, credential and expires_at (which win over data keys of the
// same name).
func Fields(leaseID, credential, expiresAt string, data map[string]string) map[string]any {
	m := make(map[string]any, len(data)+3)
	for k, v := range data {
		m[k] = v
	}
	m[FieldLeaseID], m[FieldCredential], m[FieldExpiresAt] = leaseID, credential, expiresAt
	return m
}

// MissingFieldError is a template that references a field its data lacks.
type MissingFieldError struct {
	Template string
	// Field is the missing key; Path the keys leading to it ("orders_db"),
	// empty at the top level.
	Field string
	Path  []string
	// Have lists the keys that map has, sorted.
	Have []string
}

func (e *MissingFieldError) Error() string {
	where := "the credential"
	if len(e.Path) > 0 {
		where = "." + strings.Join(e.Path, ".")
	}
	return fmt.Sprintf("%s: %s has no field %q; it has %s", e.Template, where, e.Field, strings.Join(e.Have, ", "))
}

var atNode = regexp.MustCompile(`at <(\.[A-Za-z0-9_.]+)>`)

var noEntry = regexp.MustCompile(`map has no entry for key "([^"]*)"`)

// limitedBuffer fails writes past MaxOutput.
type limitedBuffer struct{ bytes.Buffer }

var errTooLong = fmt.Errorf("output longer than %d bytes", MaxOutput)

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if b.Len()+len(p) > MaxOutput {
		return 0, errTooLong
	}
	return b.Buffer.Write(p)
}

// Execute renders the template over data (see Fields; a map of such maps
// for several credentials). A missing field is a *MissingFieldError.
func (t *Template) Execute(data map[string]any) ([]byte, error) {
	var b limitedBuffer
	if err := t.t.Execute(&b, data); err != nil {
		return nil, t.explain(err, data)
	}
	return b.Bytes(), nil
}

// explain turns text/template's execution error into one naming the
// template, and for a missing key, the field and the fields there are.
func (t *Template) explain(err error, data map[string]any) error {
	if errors.Is(err, errTooLong) {
		return fmt.Errorf("%s: %w", t.name, errTooLong)
	}
	var ee template.ExecError
	msg := err.Error()
	if errors.As(err, &ee) && ee.Err != nil {
		msg = ee.Err.Error()
	}
	m := noEntry.FindStringSubmatch(msg)
	if m == nil {
		return fmt.Errorf("%s: %s", t.name, strings.TrimPrefix(msg, "template: "))
	}
	// The node text (at <.orders_db.username>) says which map lacks the
	// key; walk to it.
	var path []string
	if at := atNode.FindStringSubmatch(msg); at != nil {
		path = strings.Split(strings.TrimPrefix(at[1], "."), ".")
	}
	cur := data
	var walked []string
	for _, k := range path {
		if k == m[1] {
			break
		}
		sub, ok := cur[k].(map[string]any)
		if !ok {
			break
		}
		cur, walked = sub, append(walked, k)
	}
	if _, has := cur[m[1]]; !has {
		return &MissingFieldError{Template: t.name, Field: m[1], Path: walked, Have: slices.Sorted(maps.Keys(cur))}
	}
	return fmt.Errorf("%s: %s", t.name, msg)
}
