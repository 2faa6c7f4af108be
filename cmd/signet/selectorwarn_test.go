package main

import (
	"bytes"
	"strings"
	"testing"

	commonv1 "github.com/signet-id/signet/internal/gen/signet/common/v1"
	"github.com/signet-id/signet/internal/store"
)

func entryWith(sels ...string) *commonv1.Entry {
	e := &commonv1.Entry{}
	for _, s := range sels {
		typ, val, _ := strings.Cut(s, ":")
		e.Selectors = append(e.Selectors, &commonv1.Selector{Type: typ, Value: val})
	}
	return e
}

func withParent(e *commonv1.Entry, parent string) *commonv1.Entry {
	e.ParentId = parent
	return e
}

func TestWarnUnknownSelectorTypes(t *testing.T) {
	tests := []struct {
		name    string
		entries []*commonv1.Entry
		want    []string // the types warned about, in order
	}{
		{"built-in only", []*commonv1.Entry{entryWith("unix:uid:1000", "unix:gid:1000")}, nil},
		{"one unknown", []*commonv1.Entry{entryWith("unix:uid:1000", "nomad:job:default")}, []string{"nomad"}},
		{"once per type across entries", []*commonv1.Entry{
			entryWith("nomad:job:a"), entryWith("nomad:job:b", "lxc:name:x"), entryWith("nomad:task:c"),
		}, []string{"nomad", "lxc"}},
		{"no entries", nil, nil},
		{"a CI issuer's selectors under its parent", []*commonv1.Entry{
			withParent(entryWith("github:repository:acme/app", "gitlab:ref:main"), "spiffe://example.org/signet/ci/github"),
		}, []string{"gitlab"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			warnUnknownSelectorTypes(&buf, tt.entries)
			var want strings.Builder
			for _, typ := range tt.want {
				want.WriteString(`warning: selector type "` + typ + `" is not known to this server's built-in attestors; ` +
					"entries with it match only if a plugin produces it\n")
			}
			if buf.String() != want.String() {
				t.Errorf("warnUnknownSelectorTypes() wrote\n%s\nwant\n%s", buf.String(), want.String())
			}
		})
	}
}

// TestEntryCreateThroughServer runs `signet entry create` against a real
// server: unknown selector types are warned about once, and the server's
// refusals come back naming the field.
func TestEntryCreateThroughServer(t *testing.T) {
	c := newCLIEnv(t, store.DriverSQLite)
	base := []string{"entry", "create", "--parent-id", "spiffe://example.org/node/a"}
	tests := []struct {
		name       string
		args       []string
		wantErr    string // "" = created
		wantStderr string
	}{
		{"unknown type warned once", []string{"--spiffe-id", "spiffe://example.org/nomad",
			"--selector", "nomad:job:default", "--selector", "nomad:task:web"}, "",
			`warning: selector type "nomad" is not known to this server's built-in attestors`},
		{"bad k8s value", []string{"--spiffe-id", "spiffe://example.org/k8s", "--selector", "k8s:namespace:shop"},
			"KEY one of ns, sa, pod-name", ""},
		{"bad unix value", []string{"--spiffe-id", "spiffe://example.org/bad", "--selector", "unix:uid:abc"},
			"uid must be a decimal number", ""},
		{"federation with itself", []string{"--spiffe-id", "spiffe://example.org/fed", "--selector", "unix:uid:1", "--federates-with", "example.org"},
			"example.org: is this server's own trust domain", ""},
		{"bare trust domain", []string{"--spiffe-id", "spiffe://example.org", "--selector", "unix:uid:1"},
			"spiffe://example.org is the trust domain's own ID", ""},
		{"federates with a trust domain without a relationship", []string{"--spiffe-id", "spiffe://example.org/fed2", "--selector", "unix:uid:1",
			"--federates-with", "nothere.org", "--federates-with", "spiffe://nothere.org"}, "",
			"warning: this server has no federation relationship with nothere.org: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, stderr, err := c.run(t, append(base, tt.args...)...)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("entry create: %v\n%s", err, stderr)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error()+stderr, tt.wantErr)):
				t.Fatalf("entry create = %v, stderr %q; want an error mentioning %q", err, stderr, tt.wantErr)
			}
			if n := strings.Count(stderr, "warning: "); tt.wantStderr != "" && (n != 1 || !strings.Contains(stderr, tt.wantStderr)) {
				t.Errorf("entry create stderr = %q, want one warning %q", stderr, tt.wantStderr)
			}
		})
	}
}
