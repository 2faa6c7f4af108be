package main

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	adminv1 "github.com/signet-id/signet/internal/gen/signet/admin/v1"
	commonv1 "github.com/signet-id/signet/internal/gen/signet/common/v1"
	"github.com/signet-id/signet/internal/store"
)

// TestEntryFederatesWithWarning: only the trust domains without a
// relationship are warned about, on create and on an update that sets
// --federates-with.
func TestEntryFederatesWithWarning(t *testing.T) {
	c := newCLIEnv(t, store.DriverSQLite)
	if _, stderr, err := c.run(t, "federation", "create", "--trust-domain", "partner.org",
		"--bundle-endpoint-url", "https://127.0.0.1:1/bundle", "--profile", "https_web"); err != nil {
		t.Fatalf("federation create: %v\n%s", err, stderr)
	}
	out, stderr, err := c.run(t, "entry", "create", "--parent-id", "spiffe://example.org/node/a", "--spiffe-id", "spiffe://example.org/web",
		"--selector", "unix:uid:1", "--federates-with", "partner.org", "--federates-with", "typo.org", "--json")
	if err != nil {
		t.Fatalf("entry create: %v\n%s", err, stderr)
	}
	if strings.Count(stderr, "warning: ") != 1 || !strings.Contains(stderr, "no federation relationship with typo.org") {
		t.Errorf("entry create stderr = %q, want one warning about typo.org", stderr)
	}
	var created struct {
		Results []struct {
			Entry struct {
				ID string `json:"id"`
			} `json:"entry"`
		} `json:"results"`
	}
	if err := json.Unmarshal([]byte(out), &created); err != nil || len(created.Results) != 1 {
		t.Fatalf("entry create --json = %q, %v", out, err)
	}
	id := created.Results[0].Entry.ID
	if _, stderr, err := c.run(t, "entry", "update", id, "--federates-with", "partner.org"); err != nil || strings.Contains(stderr, "warning") {
		t.Errorf("entry update --federates-with partner.org = %v, stderr %q; want no warning", err, stderr)
	}
	if _, stderr, err := c.run(t, "entry", "update", id, "--federates-with", "other.org"); err != nil ||
		!strings.Contains(stderr, "no federation relationship with other.org") {
		t.Errorf("entry update --federates-with other.org = %v, stderr %q; want the warning", err, stderr)
	}
}

// TestEntryListFederatesWith: entry list --federates-with lists the entries
// that federate with a trust domain, and federation delete warns about
// them.
func TestEntryListFederatesWith(t *testing.T) {
	c := newCLIEnv(t, store.DriverSQLite)
	if _, stderr, err := c.run(t, "federation", "create", "--trust-domain", "partner.org",
		"--bundle-endpoint-url", "https://127.0.0.1:1/bundle", "--profile", "https_web"); err != nil {
		t.Fatalf("federation create: %v\n%s", err, stderr)
	}
	for i, feds := range [][]string{{"partner.org"}, {"partner.org", "cloud.org"}, {"cloud.org"}, nil} {
		args := []string{"entry", "create", "--parent-id", "spiffe://example.org/node/a", "--spiffe-id", fmt.Sprintf("spiffe://example.org/w%d", i),
			"--selector", "unix:uid:1"}
		for _, f := range feds {
			args = append(args, "--federates-with", f)
		}
		if _, stderr, err := c.run(t, args...); err != nil {
			t.Fatalf("entry create: %v\n%s", err, stderr)
		}
	}
	list := func(td string) []string {
		t.Helper()
		out, stderr, err := c.run(t, "entry", "list", "--federates-with", td, "--json")
		if err != nil {
			t.Fatalf("entry list --federates-with %s: %v\n%s", td, err, stderr)
		}
		var got struct {
			Entries []struct {
				SPIFFEID string `json:"spiffe_id"`
			} `json:"entries"`
		}
		if err := json.Unmarshal([]byte(out), &got); err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, e := range got.Entries {
			ids = append(ids, e.SPIFFEID)
		}
		slices.Sort(ids)
		return ids
	}
	if got, want := list("partner.org"), []string{"spiffe://example.org/w0", "spiffe://example.org/w1"}; !slices.Equal(got, want) {
		t.Errorf("entry list --federates-with partner.org = %v, want %v", got, want)
	}
	if got, want := list("spiffe://cloud.org"), []string{"spiffe://example.org/w1", "spiffe://example.org/w2"}; !slices.Equal(got, want) {
		t.Errorf("entry list --federates-with spiffe://cloud.org = %v, want %v", got, want)
	}
	if _, _, err := c.run(t, "entry", "list", "--federates-with", "Bad Domain"); err == nil ||
		!strings.Contains(err.Error(), `--federates-with "Bad Domain": `) || !strings.Contains(err.Error(), "want a trust domain, such as partner.org") {
		t.Errorf("entry list --federates-with 'Bad Domain' = %v, want the flag named", err)
	}
	_, stderr, err := c.run(t, "federation", "delete", "partner.org")
	if err != nil || !strings.Contains(stderr, "warning: 2 entries still federate with partner.org: ") ||
		!strings.Contains(stderr, "(signet entry list --federates-with partner.org)") {
		t.Errorf("federation delete partner.org = %v, stderr %q; want the warning about 2 entries", err, stderr)
	}
}

func TestRefreshFailed(t *testing.T) {
	bundle := &commonv1.Bundle{TrustDomain: "partner.org", Sequence: 7}
	for _, tt := range []struct {
		name string
		f    *adminv1.Federation
		want string // "" = nil
	}{
		{"ok", &adminv1.Federation{TrustDomain: "partner.org", Bundle: bundle}, ""},
		{"failing with a bundle", &adminv1.Federation{TrustDomain: "partner.org", Bundle: bundle, LastError: "dial refused"},
			"refresh of partner.org failed: dial refused; the last good bundle (sequence 7) stays in use"},
		{"failing without one", &adminv1.Federation{TrustDomain: "partner.org", LastError: "bad bundle"},
			"refresh of partner.org failed: bad bundle; no bundle of partner.org is held yet"},
	} {
		err := refreshFailed(tt.f)
		if (tt.want == "") != (err == nil) || (err != nil && err.Error() != tt.want) {
			t.Errorf("%s: refreshFailed() = %v, want %q", tt.name, err, tt.want)
		}
	}
}
