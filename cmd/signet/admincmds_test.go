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
	out := c.mustRun(t, "entry", "list", "--limit", "2")
	if strings.Count(out, "spiffe://example.org/node/a") != 2 || !strings.Contains(out, "first 2 entries; more match") {
		t.Errorf("entry list --limit 2:\n%s", out)
	}
	if out := c.mustRun(t, "entry", "list", "--limit", "6"); !strings.HasSuffix(out, "6 entries\n") {
		t.Errorf("entry list --limit 6 (exactly all):\n%s", out)
	}
	var list struct{ Entries []entryJSON }
	if err := json.Unmarshal([]byte(c.mustRun(t, "entry", "list", "--limit", "3", "--json")), &list); err != nil || len(list.Entries) != 3 {
		t.Errorf("entry list --limit 3 --json = %d entries, %v", len(list.Entries), err)
	}

	out = c.mustRun(t, "entry", "show", "--spiffe-id", "spiffe://example.org/svc")
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
		{[]string{"entry", "list", "--limit", "-1"}, "--limit -1"},
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
