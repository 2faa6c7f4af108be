package inventory_test

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-id/signet/internal/errkind"
	"github.com/signet-id/signet/internal/inventory"
	"github.com/signet-id/signet/internal/model"
	"github.com/signet-id/signet/internal/store"
)

// codes returns the flag codes of it, with each message's first words,
// "code: message".
func codes(it inventory.Item) []string {
	var out []string
	for _, f := range it.Flags {
		out = append(out, string(f.Code)+": "+f.Message)
	}
	return out
}

func TestFlags(t *testing.T) {
	day := inventory.Day
	classifier := inventory.Classifier{
		Now: now, DefaultX509TTL: time.Hour, DefaultJWTTTL: 5 * time.Minute,
		Thresholds: inventory.Thresholds{Stale: 30 * day},
	}
	id := spiffeid.RequireFromString
	// wl is a workload whose SVIDs were last minted and served at lastServed.
	wl := func(created, lastServed time.Time, x509, jwt time.Duration) model.Entry {
		return model.Entry{ID: "e", SPIFFEID: id("spiffe://example.org/web"), ParentID: id("spiffe://example.org/node/a"),
			CreatedAt: created, LastIssuedAt: lastServed, LastServedAt: lastServed, X509TTL: x509, JWTTTL: jwt}
	}
	mintedOnly := func(created, lastIssued time.Time) model.Entry {
		e := wl(created, lastIssued, 0, 0)
		e.LastServedAt = time.Time{}
		return e
	}
	nd := func(lastSeen time.Time) model.Node {
		return model.Node{SPIFFEID: id("spiffe://example.org/node/a"), CreatedAt: now.Add(-400 * day), LastSeenAt: lastSeen}
	}
	fd := func(status store.FindingStatus, firstSeen, committed time.Time) store.Finding {
		return store.Finding{Fingerprint: "abcdef0123456789", RuleID: "aws-access-token", Status: status, FirstSeenAt: firstSeen,
			Locations: []store.FindingLocation{{Path: "/repo/a.tf", CommittedAt: committed}}}
	}
	cases := []struct {
		name string
		item inventory.Item
		want []string // flag codes and message prefixes
	}{
		{"workload fresh", classifier.Workload(wl(now.Add(-100*day), now.Add(-time.Hour), 0, 0), nil), nil},
		{"workload never issued, new", classifier.Workload(wl(now.Add(-29*day), time.Time{}, 0, 0), nil), nil},
		{"workload never issued, old", classifier.Workload(wl(now.Add(-31*day), time.Time{}, 0, 0), nil),
			[]string{"stale: never issued an SVID; created 2026-10-03 (31d ago)"}},
		{"workload not served for 45d", classifier.Workload(wl(now.Add(-100*day), now.Add(-45*day), 0, 0), nil),
			[]string{"stale: no SVID served since 2026-09-19 (45d ago)"}},
		{"workload served 29d ago", classifier.Workload(wl(now.Add(-100*day), now.Add(-29*day), 0, 0), nil), nil},
		{"workload minted for but never served", classifier.Workload(mintedOnly(now.Add(-100*day), now.Add(-time.Hour)), nil),
			[]string{"stale: SVIDs minted but never served to a workload"}},
		{"workload minted for, new", classifier.Workload(mintedOnly(now.Add(-time.Hour), now.Add(-time.Hour)), nil), nil},
		{"x509 TTL over 24h", classifier.Workload(wl(now, now, 48*time.Hour, 0), nil),
			[]string{"over_long_ttl: x509 TTL 2d exceeds 1d"}},
		{"x509 TTL of exactly 24h", classifier.Workload(wl(now, now, 24*time.Hour, time.Hour), nil), nil},
		{"both TTLs over", classifier.Workload(wl(now, now, 25*time.Hour, 2*time.Hour), nil),
			[]string{"over_long_ttl: x509 TTL 1d1h exceeds 1d; JWT TTL 2h exceeds 1h"}},
		{"node seen", classifier.Node(nd(now.Add(-time.Minute))), nil},
		{"node not seen for 31d", classifier.Node(nd(now.Add(-31 * day))), []string{"stale: not seen since 2026-10-03 (31d ago)"}},
		{"finding new", classifier.Finding(fd(store.FindingOpen, now.Add(-10*day), time.Time{})), nil},
		{"finding first seen 91d ago", classifier.Finding(fd(store.FindingOpen, now.Add(-91*day), time.Time{})),
			[]string{"old_static_credential: static credential known since 2026-08-04 (91d ago), longer than 90d"}},
		{"finding committed 2y ago, seen today", classifier.Finding(fd(store.FindingOpen, now, now.Add(-730*day))),
			[]string{"old_static_credential: static credential known since 2024-11-03 (730d ago)"}},
		{"finding old but resolved", classifier.Finding(fd(store.FindingResolved, now.Add(-200*day), time.Time{})), nil},
	}
	for _, c := range cases {
		got := codes(c.item)
		if len(got) != len(c.want) {
			t.Errorf("%s: flags = %q, want %q", c.name, got, c.want)
			continue
		}
		for i := range got {
			if !strings.HasPrefix(got[i], c.want[i]) {
				t.Errorf("%s: flag %d = %q, want prefix %q", c.name, i, got[i], c.want[i])
			}
		}
	}

	// Thresholds are configurable: with a 12h x509 limit the default 1h
	// passes and an explicit 13h does not; a 7d stale window flags 8 days.
	strict := classifier
	strict.Thresholds = inventory.Thresholds{Stale: 7 * day, MaxX509TTL: 12 * time.Hour, MaxJWTTTL: time.Minute}
	it := strict.Workload(wl(now.Add(-10*day), now.Add(-8*day), 13*time.Hour, 0), nil)
	if !it.Flagged(inventory.FlagStale) || !it.Flagged(inventory.FlagOverLongTTL) ||
		!strings.Contains(it.Flags[1].Message, "JWT TTL 5m exceeds 1m") {
		t.Errorf("strict thresholds: flags = %q", codes(it))
	}
}

func TestWorkloadInheritsNodeEnvironment(t *testing.T) {
	c := inventory.Classifier{Now: now}
	node := model.Node{SPIFFEID: spiffeid.RequireFromString("spiffe://example.org/node/a"),
		Labels: map[string]string{"environment": "K8s", "owner": "platform"}}
	e := model.Entry{ID: "e1", SPIFFEID: spiffeid.RequireFromString("spiffe://example.org/web"), ParentID: node.SPIFFEID,
		Labels: map[string]string{"owner": "web-team"}}
	it := c.Workload(e, &node)
	if it.Environment != "kubernetes" || it.Owner != "web-team" || it.Labels["environment"] != "K8s" {
		t.Errorf("Workload() = env %q owner %q labels %v; want kubernetes (from the node), web-team", it.Environment, it.Owner, it.Labels)
	}
	if e.Labels["environment"] != "" {
		t.Errorf("Workload() changed the entry's labels: %v", e.Labels)
	}
	if it := c.Workload(e, nil); it.Environment != inventory.Unknown {
		t.Errorf("Workload(no node) environment = %q, want unknown", it.Environment)
	}
	e.Labels = map[string]string{"environment": "saas"}
	if it := c.Workload(e, &node); it.Environment != "saas" || it.Owner != inventory.Unknown {
		t.Errorf("Workload(own label) = env %q owner %q, want saas, unknown", it.Environment, it.Owner)
	}
}

func TestParseAge(t *testing.T) {
	good := map[string]time.Duration{
		"30d": 30 * inventory.Day, "12h": 12 * time.Hour, "1w": inventory.Week, "1d12h": 36 * time.Hour,
		"90m": 90 * time.Minute, "2w3d": 17 * inventory.Day, " 7d ": 7 * inventory.Day,
	}
	for in, want := range good {
		if got, err := inventory.ParseAge(in); err != nil || got != want {
			t.Errorf("ParseAge(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "d", "30", "-1d", "0d", "3x", "1d-2h", "99999999999d", "30 days", "1.5d"} {
		if got, err := inventory.ParseAge(in); err == nil {
			t.Errorf("ParseAge(%q) = %v, want an error", in, got)
		}
	}
	format := map[time.Duration]string{
		30 * inventory.Day: "30d", 36 * time.Hour: "1d12h", time.Hour: "1h", 90 * time.Minute: "1h30m",
		5 * time.Minute: "5m", 45 * time.Second: "45s", 0: "0s",
	}
	for in, want := range format {
		if got := inventory.FormatAge(in); got != want {
			t.Errorf("FormatAge(%v) = %q, want %q", in, got, want)
		}
	}
}

func TestParseKindAndID(t *testing.T) {
	for _, k := range []string{"", "node", "workload", "credential", "finding"} {
		if _, err := inventory.ParseKind(k); err != nil {
			t.Errorf("ParseKind(%q) error = %v", k, err)
		}
	}
	if _, err := inventory.ParseKind("secret"); errkind.Of(err) != errkind.InvalidArgument || !strings.Contains(err.Error(), "node, workload") {
		t.Errorf("ParseKind(secret) error = %v, want InvalidArgument listing the kinds", err)
	}
	ids := map[string][2]string{
		"node:spiffe://example.org/n": {"node", "spiffe://example.org/n"},
		"workload:e-1":                {"workload", "e-1"},
		"finding:abcd1234":            {"finding", "abcd1234"},
		"spiffe://example.org/n":      {"", "spiffe://example.org/n"},
		"e-1":                         {"", "e-1"},
	}
	for in, want := range ids {
		k, key, err := inventory.ParseItemID(in)
		if err != nil || string(k) != want[0] || key != want[1] {
			t.Errorf("ParseItemID(%q) = %q, %q, %v; want %q", in, k, key, err, want)
		}
	}
	for _, in := range []string{"", "node:"} {
		if _, _, err := inventory.ParseItemID(in); errkind.Of(err) != errkind.InvalidArgument {
			t.Errorf("ParseItemID(%q) error = %v, want InvalidArgument", in, err)
		}
	}
}

func TestGroupKeyByPath(t *testing.T) {
	finding := func(paths ...string) inventory.Item {
		f := store.Finding{Fingerprint: "abcdef01", Status: store.FindingOpen}
		for i, p := range paths {
			l := store.FindingLocation{Path: p}
			if i == 0 && len(paths) > 1 {
				l.GoneAt = now // the first location is gone
			}
			f.Locations = append(f.Locations, l)
		}
		return (&inventory.Classifier{Now: now}).Finding(f)
	}
	workload := func(path string) inventory.Item {
		return (&inventory.Classifier{Now: now}).Workload(model.Entry{SPIFFEID: spiffeid.RequireFromString("spiffe://example.org" + path)}, nil)
	}
	cases := []struct {
		item  inventory.Item
		depth int
		want  string
	}{
		{finding("/srv/app/conf/x.env"), 1, "/srv"},
		{finding("/srv/app/conf/x.env"), 2, "/srv/app"},
		{finding("/srv/app/conf/x.env"), 9, "/srv/app/conf"},
		{finding("repo/config/db.yml"), 1, "repo"},
		{finding("x.env"), 1, "."},
		{finding("/x.env"), 1, "/"},
		{finding("env:GITHUB_TOKEN"), 1, "env:"},
		{finding("/aaa/gone.env", "/zzz/open.env"), 1, "/zzz"}, // an open location wins
		{workload("/ns/prod/sa/web"), 2, "/ns/prod"},
		{workload("/web"), 1, "/web"},
		{workload(""), 1, "/"},
	}
	for _, c := range cases {
		if got := inventory.GroupKey(&c.item, inventory.ByPath, c.depth); got != c.want {
			t.Errorf("GroupKey(%s, depth %d) = %q, want %q", c.item.Name, c.depth, got, c.want)
		}
	}
}

func TestNormalizeEnvironment(t *testing.T) {
	for in, want := range map[string]string{
		"": "unknown", "K8s": "kubernetes", "kubernetes": "kubernetes", "baremetal": "bare-metal", "VM": "vm",
		" ci ": "ci", "mainframe": "mainframe",
	} {
		if got := inventory.NormalizeEnvironment(in); got != want {
			t.Errorf("NormalizeEnvironment(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestItemsOrderAndAliases(t *testing.T) {
	id := spiffeid.RequireFromString
	in := inventory.Input{
		ServerID: serverID,
		Nodes:    []model.Node{{SPIFFEID: id("spiffe://example.org/node/b"), LastSeenAt: now}},
		Entries: []model.Entry{
			{ID: "2", SPIFFEID: id("spiffe://example.org/z"), ParentID: id("spiffe://example.org/node/b"), LastIssuedAt: now},
			{ID: "1", SPIFFEID: id("spiffe://example.org/a"), ParentID: id("spiffe://example.org/node/b"), LastIssuedAt: now},
			{ID: "alias", SPIFFEID: id("spiffe://example.org/alias"), ParentID: serverID},
		},
		Findings: []store.Finding{{Fingerprint: "00aa00aa", RuleID: "r", Preview: "AKIA…(20)", Status: store.FindingOpen,
			FirstSeenAt: now, Locations: []store.FindingLocation{{Path: "/b"}, {Path: "/a"}}}},
	}
	items := (&inventory.Classifier{Now: now}).Items(in)
	var got []string
	for _, it := range items {
		got = append(got, it.ID+" "+it.Name)
	}
	want := []string{
		"node:spiffe://example.org/node/b spiffe://example.org/node/b",
		"workload:1 spiffe://example.org/a",
		"workload:2 spiffe://example.org/z",
		"finding:00aa00aa r AKIA…(20) in /a (+1)",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Items() (-want +got):\n%s", diff)
	}
}
