package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/signet-id/signet/internal/store"
)

// TestUnknownCommandsAndFlagsFail: a typo never passes for success.
func TestUnknownCommandsAndFlagsFail(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"entry", "frobnicate"}, `unknown command "frobnicate" for "signet entry": use one of create, delete, list, show, update`},
		{[]string{"entry", "lst"}, "did you mean list?"},
		{[]string{"frobnicate"}, `unknown command "frobnicate" for "signet"`},
		{[]string{"agent", "frobnicate"}, `unknown command "frobnicate" for "signet agent"`},
		{[]string{"token", "list", "--frob"}, "unknown flag: --frob (see: signet token list --help)"},
		{[]string{"server", "run", "--trust-domian", "x"}, "unknown flag: --trust-domian: did you mean --trust-domain? (see: signet server run --help)"},
		{[]string{"entry", "create", "--spiffeid", "x"}, "unknown flag: --spiffeid: did you mean --spiffe-id?"},
		{[]string{"entry", "list", "--admin-sock", "x"}, "unknown flag: --admin-sock: did you mean --admin-socket?"}, // inherited
		{[]string{"node", "list"}, `unknown command "node" for "signet": use one of `},
		{[]string{"node", "list"}, "(did you mean agent?)"},
		{[]string{"entries", "list"}, "(did you mean entry?)"},
	} {
		_, _, err := execCLI(t, tt.args...)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("signet %s = %v, want an error containing %q", strings.Join(tt.args, " "), err, tt.want)
		}
	}
	if code := run([]string{"entry", "frobnicate"}); code == 0 {
		t.Error("signet entry frobnicate exits 0")
	}
	// A group without a subcommand shows its help and succeeds.
	out, _, err := execCLI(t, "entry")
	if err != nil || !strings.Contains(out, "Available Commands") {
		t.Errorf("signet entry = %v\n%s", err, out)
	}
}

func TestVersionFlag(t *testing.T) {
	out, _, err := execCLI(t, "--version")
	if err != nil || out != "signet "+versionString()+"\n" {
		t.Errorf("signet --version = %q, %v", out, err)
	}
	out2, _, _ := execCLI(t, "version")
	if first, _, _ := strings.Cut(out2, "\n"); first+"\n" != out {
		t.Errorf("signet version starts %q, signet --version = %q", first, out)
	}
}

// walkCommands calls f on every command of the tree.
func walkCommands(c *cobra.Command, f func(*cobra.Command)) {
	f(c)
	for _, sub := range c.Commands() {
		walkCommands(sub, f)
	}
}

// TestHelpHasNoBackticks: pflag takes a `quoted` word of a flag's usage as
// its value name, which mangles the help; no usage may hold one.
func TestHelpHasNoBackticks(t *testing.T) {
	walkCommands(newRootCmd(), func(c *cobra.Command) {
		check := func(f *pflag.Flag) {
			if strings.Contains(f.Usage, "`") {
				t.Errorf("%s --%s: usage has a backtick: %q", c.CommandPath(), f.Name, f.Usage)
			}
		}
		c.LocalFlags().VisitAll(check)
		c.PersistentFlags().VisitAll(check)
	})
}

// TestDurationsAcceptDays: every duration flag reads the same syntax.
func TestDurationsAcceptDays(t *testing.T) {
	if got, err := parseTTL("--x509-ttl", "1d"); err != nil || got != 86400 {
		t.Errorf(`parseTTL("1d") = %d, %v`, got, err)
	}
	if _, err := parseTTL("--x509-ttl", "soon"); err == nil || !strings.Contains(err.Error(), "1d") {
		t.Errorf(`parseTTL("soon") = %v, want the accepted forms`, err)
	}
	if d, err := ageFlag("stale", "2w"); err != nil || d != 14*24*time.Hour {
		t.Errorf(`ageFlag("2w") = %v, %v`, d, err)
	}
	// --timeout of the Workload API commands too.
	_, _, err := execCLI(t, "svid", "fetch", "--timeout", "1d", "--socket", filepath.Join(t.TempDir(), "none.sock"))
	if err == nil || !strings.Contains(err.Error(), "no Workload API socket") {
		t.Errorf("svid fetch --timeout 1d = %v, want it parsed (and no socket)", err)
	}
}

func TestCheckDNSName(t *testing.T) {
	for _, ok := range []string{"web.example.org", "*.web.example.org", "a-b.c", "localhost", "x1"} {
		if err := checkDNSName("--dns", ok); err != nil {
			t.Errorf("checkDNSName(%q) = %v", ok, err)
		}
	}
	for _, tt := range []struct{ in, want string }{
		{"10.0.0.1", `--dns "10.0.0.1" is an IP address: only DNS names are allowed`},
		{"::1", "is an IP address"},
		{"[2001:db8::1]", "is an IP address"},
		{"wéb.example.org", `--dns "wéb.example.org": "é" is not allowed (write internationalized names in their xn-- punycode form)`},
		{"a b", `" " is not allowed`},
		{"a..b", "empty label"},
		{"-a.b", "starts or ends with '-'"},
		{"a*.b", `"*" is not allowed`},
		{"", "empty"},
		{strings.Repeat("a", 64) + ".b", "is 64 bytes long"},
	} {
		err := checkDNSName("--dns", tt.in)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("checkDNSName(%q) = %v, want %q", tt.in, err, tt.want)
			continue
		}
		// The rule, when given, allows the wildcard it mentions and nothing
		// it forbids.
		if strings.Contains(err.Error(), "use a DNS name") && !strings.Contains(err.Error(), `"*."`) {
			t.Errorf("checkDNSName(%q) rule does not mention the wildcard: %v", tt.in, err)
		}
	}
}

// TestEntryFlagErrors: errors about an entry given by flags name the flags,
// locally and from the server.
func TestEntryFlagErrors(t *testing.T) {
	c := newCLIEnv(t, store.DriverSQLite)
	base := []string{"entry", "create", "--parent-id", cliNode, "--spiffe-id", "spiffe://example.org/web", "--selector", "unix:uid:1"}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--dns", "10.0.0.1"}, `--dns[0] "10.0.0.1" is an IP address`},
		{[]string{"--x509-ttl", "60d"}, "--x509-ttl and --jwt-ttl must be at most"},
		{[]string{"--spiffe-id", "spiffe://other.org/web"}, "--spiffe-id spiffe://other.org/web is not in trust domain example.org"},
	} {
		_, _, err := c.run(t, append(base, tt.args...)...)
		if err == nil || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "_ttl") {
			t.Errorf("entry create %v = %v, want %q", tt.args, err, tt.want)
		}
	}
	if _, _, err := c.run(t, append(base, "--x509-ttl", "1d", "--jwt-ttl", "5m")...); err != nil {
		t.Errorf("entry create --x509-ttl 1d: %v", err)
	}
	_, _, err := c.run(t, "token", "create", "--ttl", "31d")
	if err == nil || !strings.Contains(err.Error(), "--ttl 31d: a join token may live at most 30d") {
		t.Errorf("token create --ttl 31d = %v", err)
	}
	if out, _, err := c.run(t, "token", "create", "--ttl", "1d"); err != nil || strings.TrimSpace(out) == "" {
		t.Errorf("token create --ttl 1d = %q, %v", out, err)
	}
}

// TestEntryCreateFileReportsEachItem: without --atomic every valid entry of
// a file is created and every entry's result is reported; the exit code
// says some failed. With --atomic nothing is created.
func TestEntryCreateFileReportsEachItem(t *testing.T) {
	c := newCLIEnv(t, store.DriverSQLite)
	entry := func(id, sel string) map[string]any {
		return map[string]any{"spiffe_id": id, "parent_id": cliNode, "selectors": []string{sel}}
	}
	doc, _ := json.Marshal([]any{
		entry("spiffe://example.org/ok1", "unix:uid:1"),
		entry("spiffe://example.org/badsel", "nocolon"),     // refused locally
		entry("spiffe://other.org/elsewhere", "unix:uid:2"), // refused by the server
		entry("spiffe://example.org/ok2", "unix:uid:3"),
	})
	path := filepath.Join(t.TempDir(), "entries.json")
	if err := os.WriteFile(path, doc, 0o600); err != nil {
		t.Fatal(err)
	}

	_, _, err := c.run(t, "entry", "create", "--file", path, "--atomic")
	var ee *exitError
	if !errors.As(err, &ee) || ee.code != 1 {
		t.Fatalf("atomic create = %v, want exit 1", err)
	}
	if out := c.mustRun(t, "entry", "list", "-o", "json"); strings.Contains(out, "spiffe://") {
		t.Fatalf("atomic batch with invalid entries created some:\n%s", out)
	}

	out, _, err := c.run(t, "entry", "create", "--file", path)
	if !errors.As(err, &ee) || ee.code != 1 || !strings.Contains(err.Error(), "2 of 4 entries failed") {
		t.Fatalf("create = %v, want exit 1 and a count", err)
	}
	for _, want := range []string{
		"entry 0 (spiffe://example.org/ok1): created ",
		`entry 1 (spiffe://example.org/badsel): failed: selectors[0]: invalid selector "nocolon"`,
		"entry 2 (spiffe://other.org/elsewhere): failed: spiffe_id spiffe://other.org/elsewhere is not in trust domain",
		"entry 3 (spiffe://example.org/ok2): created ",
		"created 2 of 4 entries",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	list := c.mustRun(t, "entry", "list", "--json")
	if !strings.Contains(list, "/ok1") || !strings.Contains(list, "/ok2") || strings.Contains(list, "badsel") {
		t.Errorf("entries after a partial create:\n%s", list)
	}
	// JSON output reports every item too.
	out, _, _ = c.run(t, "entry", "create", "--file", path, "-o", "json")
	var res struct {
		Results []struct{ Status, Error string }
		Created int
		Failed  int
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil || len(res.Results) != 4 || res.Failed < 2 {
		t.Errorf("create -o json = %v, %+v\n%s", err, res, out)
	}
}

// TestServerRunErrorsNameKeys: the server's configuration errors name the
// keys of the file (and so the flags), not Go or wire names.
func TestServerRunErrorsNameKeys(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "server")
	_, _, err := execCLI(t, "server", "run", "--trust-domain", "example.org", "--data-dir", dir,
		"--bind-address", "127.0.0.1:0", "--ca-ttl", "1h")
	if err == nil || !strings.Contains(err.Error(), "half of ca.ttl") || strings.Contains(err.Error(), "ca_ttl") {
		t.Errorf("server run --ca-ttl 1h = %v", err)
	}
	_, _, err = execCLI(t, "server", "run", "--trust-domain", "Example..org", "--data-dir", dir)
	if err == nil || !strings.Contains(err.Error(), `--trust-domain "Example..org"`) {
		t.Errorf("server run --trust-domain Example..org = %v", err)
	}
	if _, err := os.Stat(dir); err == nil {
		t.Error("a refused server run created its data dir")
	}
}

// TestEntryCreateFileInBatches: a file larger than one batch is sent in
// several calls; every entry's result comes back in file order, and an
// entry the server refuses in a later batch fails alone.
func TestEntryCreateFileInBatches(t *testing.T) {
	c := newCLIEnv(t, store.DriverSQLite)
	n := 2*entryBatchSize + 5
	bad := entryBatchSize + 7 // in the second batch
	entries := make([]map[string]any, n)
	for i := range entries {
		id := fmt.Sprintf("spiffe://example.org/batch/%05d", i)
		if i == bad {
			id = "spiffe://other.org/elsewhere"
		}
		entries[i] = map[string]any{"spiffe_id": id, "parent_id": cliNode, "selectors": []string{"unix:uid:" + strconv.Itoa(i)}}
	}
	doc, _ := json.Marshal(map[string]any{"entries": entries})
	path := filepath.Join(t.TempDir(), "entries.json")
	if err := os.WriteFile(path, doc, 0o600); err != nil {
		t.Fatal(err)
	}
	out, errOut, err := c.run(t, "entry", "create", "--file", path)
	if strings.Contains(errOut, "creating entries") {
		t.Errorf("progress bar shown on output that is not a terminal:\n%s", errOut)
	}
	var ee *exitError
	if !errors.As(err, &ee) || ee.code != 1 || !strings.Contains(err.Error(), fmt.Sprintf("1 of %d entries failed", n)) {
		t.Fatalf("create = %v, want exit 1 and a count", err)
	}
	for _, want := range []string{
		"entry 0 (spiffe://example.org/batch/00000): created ",
		fmt.Sprintf("entry %d (spiffe://other.org/elsewhere): failed: ", bad),
		fmt.Sprintf("entry %d (spiffe://example.org/batch/%05d): created ", n-1, n-1),
		fmt.Sprintf("created %d of %d entries", n-1, n),
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	got, err := c.st.ListEntries(t.Context(), store.EntryFilter{Limit: 10 * n})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != n-1 {
		t.Errorf("store holds %d entries, want %d", len(got), n-1)
	}
}
