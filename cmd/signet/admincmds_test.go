package main

import (
	"encoding/json"
	"encoding/pem"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	adminv1 "github.com/signet-id/signet/internal/gen/signet/admin/v1"
	"github.com/signet-id/signet/internal/store"
)

// TestTokenListAndRevoke: tokens are listed by ref, never shown, and a
// revoked one can no longer attest a node.
func TestTokenListAndRevoke(t *testing.T) {
	c := newCLIEnv(t, store.DriverSQLite)
	tok := strings.TrimSpace(c.mustRun(t, "token", "create", "--spiffe-id", "spiffe://example.org/node/r", "--ttl", "2h"))
	_, errOut, _ := c.run(t, "token", "create")
	refs := regexp.MustCompile(`join token ([0-9a-f]{8}) for`).FindStringSubmatch(errOut)
	if refs == nil {
		t.Fatalf("token create does not print the ref: %q", errOut)
	}

	out := c.mustRun(t, "token", "list")
	if strings.Contains(out, tok) {
		t.Fatalf("token list shows a token:\n%s", out)
	}
	for _, want := range []string{"REF", "spiffe://example.org/node/r", refs[1], "spiffe://example.org/signet/agent/join_token/", "2 unused join token(s)"} {
		if !strings.Contains(out, want) {
			t.Errorf("token list lacks %q:\n%s", want, out)
		}
	}
	var list struct{ Tokens []tokenJSON }
	if err := json.Unmarshal([]byte(c.mustRun(t, "token", "list", "-o", "json")), &list); err != nil || len(list.Tokens) != 2 {
		t.Fatalf("token list -o json = %+v, %v", list, err)
	}
	var ref string
	for _, tj := range list.Tokens {
		if tj.SPIFFEID == "spiffe://example.org/node/r" {
			ref = tj.Ref
		}
		if _, err := time.Parse(time.RFC3339, tj.ExpiresAt); err != nil {
			t.Errorf("expires_at %q is not RFC 3339", tj.ExpiresAt)
		}
	}

	if _, _, err := c.run(t, "token", "revoke", "zz"); err == nil || !strings.Contains(err.Error(), "hex digits") {
		t.Errorf("token revoke zz = %v", err)
	}
	if out := c.mustRun(t, "token", "revoke", ref[:6]); !strings.Contains(out, "revoked join token "+ref+" for spiffe://example.org/node/r") {
		t.Errorf("token revoke = %q", out)
	}
	if _, _, err := c.run(t, "token", "revoke", ref); err == nil || !strings.Contains(err.Error(), "no join token with ref") {
		t.Errorf("second revoke = %v", err)
	}
	if _, err := c.env.TryAttest(tok); err == nil {
		t.Error("a revoked token still attests")
	}
	if out := c.mustRun(t, "audit", "list", "--action", "token.revoke"); !strings.Contains(out, ref) {
		t.Errorf("no token.revoke audit record for %s:\n%s", ref, out)
	}
}

// TestEntryShowAndList: show by SPIFFE ID; list with a limit and a count.
func TestEntryShowAndList(t *testing.T) {
	c := newCLIEnv(t, store.DriverSQLite)
	for i := range 5 {
		c.mustRun(t, "entry", "create", "--parent-id", cliNode, "--spiffe-id", "spiffe://example.org/svc",
			"--selector", fmt.Sprintf("unix:uid:%d", i))
	}
	c.mustRun(t, "entry", "create", "--parent-id", cliNode, "--spiffe-id", "spiffe://example.org/other", "--selector", "unix:uid:9")

	if out := c.mustRun(t, "entry", "list"); !strings.HasSuffix(out, "6 entries\n") {
		t.Errorf("entry list footer:\n%s", out)
	}
	seen := walkPages(t, c, []string{"entry", "list", "--limit", "4"}, "spiffe://example.org/node/a", 4)
	if len(seen) != 6 {
		t.Errorf("entry list, paged by 4: %d distinct entries, want 6", len(seen))
	}
	var list struct {
		Entries       []entryJSON
		NextPageToken string `json:"next_page_token"`
	}
	if err := json.Unmarshal([]byte(c.mustRun(t, "entry", "list", "--limit", "3", "--json")), &list); err != nil || len(list.Entries) != 3 || list.NextPageToken == "" {
		t.Fatalf("entry list --limit 3 --json = %d entries, next %q, %v", len(list.Entries), list.NextPageToken, err)
	}
	first := list.Entries
	list.Entries = nil // Unmarshal would reuse the array first holds
	if err := json.Unmarshal([]byte(c.mustRun(t, "entry", "list", "--limit", "3", "--json", "--page-token", list.NextPageToken)), &list); err != nil || len(list.Entries) != 3 {
		t.Fatalf("entry list --page-token --json = %d entries, %v", len(list.Entries), err)
	}
	for _, e := range first {
		for _, e2 := range list.Entries {
			if e.ID == e2.ID {
				t.Errorf("entry %s is on both pages", e.ID)
			}
		}
	}

	out := c.mustRun(t, "entry", "show", "--spiffe-id", "spiffe://example.org/svc")
	if strings.Count(out, "SPIFFE ID:") != 5 || strings.Contains(out, "/other") {
		t.Errorf("entry show --spiffe-id:\n%s", out)
	}
	if err := json.Unmarshal([]byte(c.mustRun(t, "entry", "show", "--spiffe-id", "spiffe://example.org/other", "-o", "json")), &list); err != nil || len(list.Entries) != 1 {
		t.Errorf("entry show --spiffe-id -o json = %+v, %v", list, err)
	}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"entry", "show", "--spiffe-id", "spiffe://example.org/none"}, "no entry has SPIFFE ID spiffe://example.org/none"},
		{[]string{"entry", "show", "x", "--spiffe-id", "spiffe://example.org/svc"}, "not both"},
		{[]string{"entry", "show"}, "give one ENTRY_ID, or --spiffe-id ID"},
		{[]string{"entry", "list", "--limit", "-1"}, "--limit -1: want 1 to 10000"},
		{[]string{"entry", "list", "--limit", "0"}, "--limit 0: want 1 to 10000"},
		{[]string{"entry", "list", "--page-token", "not an id"}, "page_token"},
		{[]string{"entry", "list", "-o", "yaml"}, `"yaml" is not an output format: use table or json`},
	} {
		if _, _, err := c.run(t, tt.args...); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("signet %s = %v, want %q", strings.Join(tt.args, " "), err, tt.want)
		}
	}
}

// TestAgentListStatus: the table shows each agent's live status and when
// its SVID expires.
func TestAgentListStatus(t *testing.T) {
	c := newCLIEnv(t, store.DriverSQLite)
	c.env.Attest("spiffe://example.org/node/live")
	c.env.Attest("spiffe://example.org/node/gone")
	ctx := t.Context()
	if err := c.st.TouchNode(ctx, spiffeid.RequireFromString("spiffe://example.org/node/live"), time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := c.env.Admin.BanNode(ctx, &adminv1.NodeRequest{SpiffeId: "spiffe://example.org/node/gone"}); err != nil {
		t.Fatal(err)
	}
	out := c.mustRun(t, "agent", "list")
	for _, want := range []string{"STATUS", "active", "banned", "(in 1h)", "2 agent(s)"} {
		if !strings.Contains(out, want) {
			t.Errorf("agent list lacks %q:\n%s", want, out)
		}
	}
	var list struct{ Agents []nodeJSON }
	if err := json.Unmarshal([]byte(c.mustRun(t, "agent", "list", "-o", "json")), &list); err != nil || len(list.Agents) != 2 || list.Agents[0].Status == "" {
		t.Errorf("agent list -o json = %+v, %v", list, err)
	}

	now := time.Unix(10_000, 0)
	for _, tt := range []struct {
		t    time.Time
		want string
	}{
		{time.Unix(10_000-300, 0), "(5m ago)"}, {time.Unix(10_000+3599, 0), "(in 1h)"}, {now, "(now)"}, {time.Time{}, "-"},
	} {
		if got := relTime(tt.t, now); !strings.HasSuffix(got, tt.want) {
			t.Errorf("relTime(%v) = %q, want a suffix %q", tt.t, got, tt.want)
		}
	}
	for _, tt := range []struct {
		n    *adminv1.Node
		want string
	}{
		{&adminv1.Node{Banned: true}, "banned"},
		{&adminv1.Node{CertNotAfter: 9_000, LastSeenAt: 9_990}, "svid expired"},
		{&adminv1.Node{CertNotAfter: 20_000}, "never seen"},
		{&adminv1.Node{CertNotAfter: 20_000, LastSeenAt: 10_000 - 600}, "silent 10m"},
		{&adminv1.Node{CertNotAfter: 20_000, LastSeenAt: 10_000 - 30}, "active"},
	} {
		if got := nodeStatus(tt.n, now); got != tt.want {
			t.Errorf("nodeStatus(%v) = %q, want %q", tt.n, got, tt.want)
		}
	}
}

// TestBundleShowFormats: PEM by default, the SPIFFE bundle (JWKS) with
// --format spiffe.
func TestBundleShowFormats(t *testing.T) {
	c := newCLIEnv(t, store.DriverSQLite)
	out := c.mustRun(t, "bundle", "show")
	if b, _ := pem.Decode([]byte(out)); b == nil || b.Type != "CERTIFICATE" {
		t.Fatalf("bundle show is not PEM:\n%s", out)
	}
	out = c.mustRun(t, "bundle", "show", "--format", "spiffe")
	b, err := spiffebundle.Parse(spiffeid.RequireTrustDomainFromString("example.org"), []byte(out))
	if err != nil || len(b.X509Authorities()) == 0 || len(b.JWTAuthorities()) == 0 {
		t.Fatalf("bundle show --format spiffe = %v\n%s", err, out)
	}
	if _, _, err := c.run(t, "bundle", "show", "--format", "jwks"); err == nil || !strings.Contains(err.Error(), "use pem or spiffe") {
		t.Errorf("--format jwks = %v", err)
	}
}

// TestOutputOption: every read command takes -o table|json, and --json.
func TestOutputOption(t *testing.T) {
	var missing []string
	walkCommands(newRootCmd(), func(cmd *cobra.Command) {
		if cmd.Flags().Lookup("json") != nil && cmd.Flags().ShorthandLookup("o") == nil {
			missing = append(missing, cmd.CommandPath())
		}
	})
	if len(missing) > 0 {
		t.Errorf("commands with --json but no -o: %v", missing)
	}
	for _, path := range [][]string{{"entry", "list"}, {"entry", "show"}, {"agent", "list"}, {"agent", "show"}, {"token", "list"},
		{"authority", "list"}, {"svid", "fetch"}, {"jwt", "fetch"}, {"jwt", "validate"}, {"audit", "list"}, {"inventory", "list"}, {"coverage"}} {
		cmd, _, err := newRootCmd().Find(path)
		if err != nil || cmd.Flags().ShorthandLookup("o") == nil {
			t.Errorf("signet %s has no -o (%v)", strings.Join(path, " "), err)
		}
	}
}

// TestEntryCreateNode: --node is the shorthand for a node alias's parent.
func TestEntryCreateNode(t *testing.T) {
	c := newCLIEnv(t, store.DriverSQLite)
	c.mustRun(t, "entry", "create", "--node", "--spiffe-id", "spiffe://example.org/fleet/web", "--selector", "x509pop:subject:cn:web-7")
	out := c.mustRun(t, "entry", "show", "--spiffe-id", "spiffe://example.org/fleet/web")
	if !strings.Contains(out, "spiffe://example.org/signet/server") || !strings.Contains(out, "x509pop:subject:cn:web-7") {
		t.Errorf("entry created with --node:\n%s", out)
	}
	if _, _, err := c.run(t, "entry", "create", "--node", "--parent-id", cliNode, "--spiffe-id", "spiffe://example.org/x",
		"--selector", "x509pop:subject:cn:a"); err == nil || !strings.Contains(err.Error(), "--node and --parent-id: give one") {
		t.Errorf("--node with --parent-id = %v, want an error naming both", err)
	}
}

func TestAgentAllow(t *testing.T) {
	c := newCLIEnv(t, store.DriverSQLite)
	const h = "9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08"
	if out := c.mustRun(t, "agent", "allow", "--tpm-ek-hash", h); !strings.Contains(out, "allowed tpm:"+strings.ToLower(h)) {
		t.Errorf("agent allow = %q", out)
	}
	if out := c.mustRun(t, "agent", "allowed"); !strings.Contains(out, strings.ToLower(h)) {
		t.Errorf("agent allowed = %q", out)
	}
	if _, _, err := c.run(t, "agent", "allow", "--tpm-ek-hash", "abc"); err == nil || !strings.Contains(err.Error(), "64 hex digits") {
		t.Errorf("agent allow --tpm-ek-hash abc = %v, want the format named", err)
	}
	c.mustRun(t, "agent", "disallow", "--tpm-ek-hash", h)
	if _, _, err := c.run(t, "agent", "disallow", "--tpm-ek-hash", h); err == nil {
		t.Errorf("disallowing twice succeeded")
	}
}

// walkPages runs a list command page by page, following the "next page"
// line on stderr, and returns the distinct lines of all pages that contain
// marker. Each page holds at most limit of them.
func walkPages(t *testing.T, c *cliEnv, args []string, marker string, limit int) map[string]bool {
	t.Helper()
	seen := map[string]bool{}
	next := regexp.MustCompile(`next page: .* --page-token (\S+)`)
	token := ""
	for pages := 0; ; pages++ {
		if pages > 20 {
			t.Fatal("more than 20 pages")
		}
		a := args
		if token != "" {
			a = append(append([]string{}, args...), "--page-token", token)
		}
		out, errOut, err := c.run(t, a...)
		if err != nil {
			t.Fatalf("signet %s: %v", strings.Join(a, " "), err)
		}
		n := 0
		for _, l := range strings.Split(out, "\n") {
			if strings.Contains(l, marker) {
				n++
				if seen[l] {
					t.Errorf("page %d repeats %q", pages, l)
				}
				seen[l] = true
			}
		}
		if n > limit {
			t.Errorf("page %d has %d items, want at most %d", pages, n, limit)
		}
		m := next.FindStringSubmatch(errOut)
		if m == nil {
			return seen
		}
		token = m[1]
	}
}

// TestListPaging: agent list and token list page on the server, each page
// naming the next on stderr and in JSON.
func TestListPaging(t *testing.T) {
	c := newCLIEnv(t, store.DriverSQLite)
	for i := range 5 {
		c.env.Attest(fmt.Sprintf("spiffe://example.org/node/p%d", i))
		c.mustRun(t, "token", "create", "--spiffe-id", fmt.Sprintf("spiffe://example.org/node/t%d", i))
	}
	if got := walkPages(t, c, []string{"agent", "list", "--limit", "2"}, "spiffe://example.org/node/p", 2); len(got) != 5 {
		t.Errorf("agent list, paged by 2: %d agents, want 5", len(got))
	}
	if got := walkPages(t, c, []string{"token", "list", "--limit", "2"}, "spiffe://example.org/node/t", 2); len(got) != 5 {
		t.Errorf("token list, paged by 2: %d tokens, want 5", len(got))
	}
	var agents struct {
		Agents        []nodeJSON
		NextPageToken string `json:"next_page_token"`
	}
	if err := json.Unmarshal([]byte(c.mustRun(t, "agent", "list", "--limit", "3", "-o", "json")), &agents); err != nil || len(agents.Agents) != 3 || agents.NextPageToken == "" {
		t.Errorf("agent list --limit 3 -o json = %d agents, next %q, %v", len(agents.Agents), agents.NextPageToken, err)
	}
	var tokens struct {
		Tokens        []tokenJSON
		NextPageToken string `json:"next_page_token"`
	}
	if err := json.Unmarshal([]byte(c.mustRun(t, "token", "list", "--limit", "10", "-o", "json")), &tokens); err != nil || len(tokens.Tokens) != 5 || tokens.NextPageToken != "" {
		t.Errorf("token list --limit 10 -o json = %d tokens, next %q, %v; want 5, no next page", len(tokens.Tokens), tokens.NextPageToken, err)
	}
	if _, _, err := c.run(t, "token", "list", "--page-token", "zz"); err == nil || !strings.Contains(err.Error(), "page_token") {
		t.Errorf("token list --page-token zz = %v, want an error naming page_token", err)
	}
	if _, _, err := c.run(t, "agent", "list", "--limit", "10001"); err == nil || !strings.Contains(err.Error(), "--limit 10001") {
		t.Errorf("agent list --limit 10001 = %v", err)
	}
	// Two authorities (x509, jwt), one per page.
	if got := walkPages(t, c, []string{"authority", "list", "--limit", "1"}, "active", 1); len(got) != 2 {
		t.Errorf("authority list, paged by 1: %d authorities, want 2", len(got))
	}
	for i := range 3 {
		c.mustRun(t, "agent", "allow", "--tpm-ek-hash", strings.Repeat(fmt.Sprint(i), 64))
	}
	if got := walkPages(t, c, []string{"agent", "allowed", "--limit", "2"}, "tpm", 2); len(got) != 3 {
		t.Errorf("agent allowed, paged by 2: %d allowances, want 3", len(got))
	}
	for i := range 3 {
		c.mustRun(t, "federation", "create", "--trust-domain", fmt.Sprintf("f%d.test", i),
			"--bundle-endpoint-url", "https://127.0.0.1:1/bundle", "--profile", "https_web")
	}
	if got := walkPages(t, c, []string{"federation", "list", "--limit", "2"}, "https_web", 2); len(got) != 3 {
		t.Errorf("federation list, paged by 2: %d relationships, want 3", len(got))
	}
	if _, _, err := c.run(t, "federation", "list", "--page-token", "Not A Trust Domain"); err == nil || !strings.Contains(err.Error(), "page_token") {
		t.Errorf("federation list --page-token junk = %v, want an error naming page_token", err)
	}
	// audit list: pages by sequence number; --limit 0 --json streams all.
	all := c.mustRun(t, "audit", "list", "--limit", "0", "--json")
	if got := walkPages(t, c, []string{"audit", "list", "--limit", "3", "--json"}, `"seq":`, 3); len(got) != strings.Count(all, "\n") {
		t.Errorf("audit list paged by 3: %d records, --limit 0: %d", len(got), strings.Count(all, "\n"))
	}
	if _, _, err := c.run(t, "audit", "list", "--limit", "0"); err == nil || !strings.Contains(err.Error(), "--limit 0 with --json") {
		t.Errorf("audit list --limit 0 (table) = %v", err)
	}
}
