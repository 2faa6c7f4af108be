package e2e

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"

	"github.com/signet-id/signet/internal/store/storetest"
)

// replica is one `signet server run` process of a trust domain whose
// replicas share one PostgreSQL schema and one CA (key_manager sealed).
type replica struct {
	name  string
	p     *proc
	admin string // admin socket
	addr  string // agent API
}

// replicaSet is what the replicas of one test share: the store's DSN and
// the KEK file.
type replicaSet struct {
	dir, dsn, kek string
}

func newReplicaSet(t *testing.T) *replicaSet {
	t.Helper()
	rs := &replicaSet{dir: t.TempDir(), dsn: storetest.PostgresDSN(t)}
	rs.kek = filepath.Join(rs.dir, "ca.kek")
	kek := make([]byte, 32)
	_, _ = rand.Read(kek)
	if err := os.WriteFile(rs.kek, kek, 0o600); err != nil {
		t.Fatal(err)
	}
	return rs
}

// start starts replica name with extra server flags; wait waits for it.
func (rs *replicaSet) start(t *testing.T, name string, extra ...string) *replica {
	t.Helper()
	dir := filepath.Join(rs.dir, name)
	cfg := filepath.Join(rs.dir, name+".yaml")
	writeFile(t, cfg, fmt.Sprintf(`trust_domain: example.org
data_dir: %s
bind_address: 127.0.0.1:0
log: {level: info, format: text}
store: {driver: postgres, dsn: %q}
key_manager: {sealed: {kek_file: %s}}
`, dir, rs.dsn, rs.kek))
	r := &replica{name: name, admin: filepath.Join(dir, "admin.sock")}
	r.p = start(t, name, append([]string{"server", "run", "--config", cfg}, extra...)...)
	return r
}

func (r *replica) wait(t *testing.T) {
	t.Helper()
	r.addr, _ = serverAddrs(t, r.p)
	eventually(t, 30*time.Second, r.name+" healthcheck", func() error {
		_, errOut, err := signetRun("healthcheck", "--admin-socket", r.admin)
		if err != nil {
			return fmt.Errorf("%v: %s", err, errOut)
		}
		return nil
	})
}

// authorityRow is one authority of `authority list --json`.
type authorityRow struct {
	ID       string `json:"id"`
	Kind     string `json:"kind"`
	State    string `json:"state"`
	ServerID string `json:"server_id"`
}

func (r *replica) authorities(t *testing.T) []authorityRow {
	t.Helper()
	var out struct {
		Authorities []authorityRow `json:"authorities"`
	}
	raw := signet(t, "authority", "list", "--admin-socket", r.admin, "--json", "--limit", "1000")
	if err := json.Unmarshal([]byte(raw), &out); err != nil {
		t.Fatalf("authority list --json: %v\n%s", err, raw)
	}
	return out.Authorities
}

// states returns "kind/state" of every authority, sorted, and the id of
// the active authority of kind.
func states(as []authorityRow) []string {
	var s []string
	for _, a := range as {
		s = append(s, a.Kind+"/"+a.State)
	}
	slices.Sort(s)
	return s
}

func idOf(as []authorityRow, kind, state string) string {
	for _, a := range as {
		if a.Kind == kind && a.State == state {
			return a.ID
		}
	}
	return ""
}

// bundlePEM is the replica's trust bundle as `bundle show` prints it.
func (r *replica) bundlePEM(t *testing.T) string {
	t.Helper()
	return signet(t, "bundle", "show", "--admin-socket", r.admin)
}

// nodeAgent is an agent process with its node ID and Workload API socket.
type nodeAgent struct {
	p      *proc
	node   string
	socket string
}

// startAgent admits a node with a join token from tokenFrom and runs its
// agent against servers (a comma list), trusting bundlePath.
func startAgent(t *testing.T, name string, tokenFrom *replica, servers, bundlePath string) *nodeAgent {
	t.Helper()
	dir := t.TempDir()
	a := &nodeAgent{node: "spiffe://example.org/node/" + name, socket: filepath.Join(dir, "agent.sock")}
	token := strings.TrimSpace(signet(t, "token", "create", "--admin-socket", tokenFrom.admin, "--spiffe-id", a.node))
	a.p = start(t, name, "agent", "run", "--server-address", servers, "--trust-bundle", bundlePath,
		"--join-token", token, "--socket", a.socket, "--data-dir", filepath.Join(dir, "data"),
		"--sync-interval", "1s", "--log-format", "text")
	return a
}

// svid returns the agent's X509-SVID for id, waiting for it.
func (a *nodeAgent) svid(t *testing.T, id string, timeout time.Duration) *x509svid.SVID {
	t.Helper()
	var got *x509svid.SVID
	eventually(t, timeout, "the agent serving "+id, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		svids, err := workloadapi.FetchX509SVIDs(ctx, workloadapi.WithAddr("unix://"+a.socket))
		if err != nil {
			return err
		}
		for _, s := range svids {
			if s.ID.String() == id {
				got = s
				return nil
			}
		}
		return fmt.Errorf("%d SVIDs served, none for %s", len(svids), id)
	})
	return got
}

var uidSelector = "unix:uid:" + strconv.Itoa(os.Getuid())

// register creates an entry for the agent's node for the test's uid.
func (a *nodeAgent) register(t *testing.T, via *replica, id string) {
	t.Helper()
	signet(t, "entry", "create", "--admin-socket", via.admin, "--parent-id", a.node, "--spiffe-id", id, "--selector", uidSelector)
}

// verifyAgainst fails unless svid chains to the PEM bundle.
func verifyAgainst(t *testing.T, what string, svid *x509svid.SVID, bundlePEM string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "bundle.pem")
	writeFile(t, path, bundlePEM)
	certs, err := x509bundle.Load(spiffeid.RequireTrustDomainFromString("example.org"), path)
	if err != nil {
		t.Fatalf("load bundle: %v", err)
	}
	if _, _, err := x509svid.Verify(svid.Certificates, certs); err != nil {
		t.Errorf("%s does not verify against the bundle: %v", what, err)
	}
}

// issuer is the hex authority key id of an SVID: the id of the x509
// authority that signed it.
func issuer(s *x509svid.SVID) string { return hex.EncodeToString(s.Certificates[0].AuthorityKeyId) }

// TestReplicasShareOneCA: two replicas on one PostgreSQL with the sealed key
// manager start together and create one X.509 and one JWT authority between
// them; both serve the same bundle, and SVIDs minted through either verify
// against the other's. With one-minute CA and JWT lifetimes, the automatic
// rotation prepares and activates exactly one successor of each (one
// authority per step, not one per replica), and both replicas then sign
// with it. Operator commands on either replica act on the trust domain.
// About 70 s, in parallel with the other end-to-end tests.
func TestReplicasShareOneCA(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test builds and runs processes")
	}
	t.Parallel()
	rs := newReplicaSet(t)
	ttl := []string{"--ca-ttl", "1m", "--ca-jwt-key-ttl", "1m", "--default-x509-ttl", "30s", "--default-jwt-ttl", "30s", "--agent-ttl", "30s"}
	a, b := rs.start(t, "replica-a", ttl...), rs.start(t, "replica-b", ttl...) // racing for the first authorities
	a.wait(t)
	b.wait(t)

	as := a.authorities(t)
	if got, want := states(as), []string{"jwt/active", "x509/active"}; !slices.Equal(got, want) {
		t.Fatalf("authorities after two replicas started = %v, want %v: %+v", got, want, as)
	}
	for _, au := range as {
		if au.ServerID != "trust-domain" {
			t.Errorf("authority %s/%s owned by %q, want the trust domain's", au.Kind, au.ID, au.ServerID)
		}
	}
	if bs := b.authorities(t); !slices.Equal(states(bs), states(as)) || idOf(bs, "x509", "active") != idOf(as, "x509", "active") {
		t.Errorf("replica b lists %+v, replica a %+v", bs, as)
	}
	eventually(t, 10*time.Second, "both replicas serving the same bundle", func() error {
		if pa, pb := a.bundlePEM(t), b.bundlePEM(t); pa != pb {
			return fmt.Errorf("bundles differ:\n%s\n%s", pa, pb)
		}
		return nil
	})

	bundlePath := filepath.Join(rs.dir, "bundle.pem")
	writeFile(t, bundlePath, a.bundlePEM(t))
	agentA := startAgent(t, "agent-a", a, a.addr, bundlePath)
	agentB := startAgent(t, "agent-b", b, b.addr, bundlePath)
	agentA.register(t, a, "spiffe://example.org/replicas/a1")
	agentB.register(t, b, "spiffe://example.org/replicas/b1")
	first := idOf(as, "x509", "active")
	for _, c := range []struct {
		ag      *nodeAgent
		id      string
		otherOf *replica
	}{{agentA, "spiffe://example.org/replicas/a1", b}, {agentB, "spiffe://example.org/replicas/b1", a}} {
		s := c.ag.svid(t, c.id, 30*time.Second)
		verifyAgainst(t, "an SVID minted through one replica, against the other's bundle,", s, c.otherOf.bundlePEM(t))
		if issuer(s) != first {
			t.Errorf("%s signed by %s, want the trust domain's x509 authority %s", c.id, issuer(s), first)
		}
	}

	// The rotation: prepared at 30 s, activated at 50 s of the 1 m life.
	eventually(t, 80*time.Second, "the automatic rotation of both kinds", func() error {
		if got := states(a.authorities(t)); !slices.Contains(got, "x509/old") || !slices.Contains(got, "jwt/old") {
			return fmt.Errorf("authorities %v", got)
		}
		return nil
	})
	as = a.authorities(t)
	if got, want := states(as), []string{"jwt/active", "jwt/old", "x509/active", "x509/old"}; !slices.Equal(got, want) {
		t.Fatalf("after one rotation by two replicas: %v, want %v (one authority per step): %+v", got, want, as)
	}
	second := idOf(as, "x509", "active")
	// The replica that did not take the step follows within a refresh (1 s):
	// each logs that it activated the authority or signs with it.
	for _, r := range []*replica{a, b} {
		eventually(t, 10*time.Second, r.name+" signing with "+second, func() error {
			for _, line := range strings.Split(r.p.out.String(), "\n") {
				if strings.Contains(line, second) && (strings.Contains(line, "authority activ") || strings.Contains(line, "signing with the active authority")) {
					return nil
				}
			}
			return fmt.Errorf("no line of %s activating or signing with %s yet", r.name, second)
		})
	}
	agentA.register(t, a, "spiffe://example.org/replicas/a2")
	agentB.register(t, b, "spiffe://example.org/replicas/b2")
	for _, c := range []struct {
		ag *nodeAgent
		id string
	}{{agentA, "spiffe://example.org/replicas/a2"}, {agentB, "spiffe://example.org/replicas/b2"}} {
		if s := c.ag.svid(t, c.id, 30*time.Second); issuer(s) != second {
			t.Errorf("%s minted after the rotation signed by %s, want the new active authority %s", c.id, issuer(s), second)
		}
	}

	// Operator commands on either replica act on the one set.
	signet(t, "authority", "prepare", "x509", "--admin-socket", b.admin)
	if _, errOut, err := signetRun("authority", "prepare", "x509", "--admin-socket", a.admin); err == nil || !strings.Contains(errOut, "already prepared") {
		t.Errorf("prepare on replica a after replica b prepared: %v %q, want already prepared", err, errOut)
	}
	third := idOf(a.authorities(t), "x509", "prepared")
	signet(t, "authority", "activate", "x509", "--admin-socket", a.admin)
	if got := idOf(b.authorities(t), "x509", "active"); got != third || third == "" {
		t.Fatalf("after activate on replica a, replica b lists active %q, want %q", got, third)
	}
	// Replica b follows at its next look at the store (every second): until
	// then it signs with the previous authority, still valid and published.
	eventually(t, 10*time.Second, "replica b following the activation", func() error {
		if !strings.Contains(b.p.out.String(), `msg="signing with the active authority" component=ca kind=x509 authority_id=`+third) {
			return fmt.Errorf("replica b has not logged that it signs with %s", third)
		}
		return nil
	})
	agentB.register(t, b, "spiffe://example.org/replicas/b3")
	if s := agentB.svid(t, "spiffe://example.org/replicas/b3", 30*time.Second); issuer(s) != third {
		t.Errorf("replica b signs with %s after activate on replica a, want %s", issuer(s), third)
	}
	signet(t, "authority", "taint", "x509", second, "--admin-socket", b.admin)
	signet(t, "authority", "revoke", "x509", second, "--admin-socket", a.admin)
	eventually(t, 15*time.Second, "the revoked authority gone from replica b's bundle", func() error {
		ids := bundleIDs(t, b.bundlePEM(t))
		if slices.Contains(ids, second) || !slices.Contains(ids, third) {
			return fmt.Errorf("replica b's bundle holds x509 authorities %v; want %s and not the revoked %s", ids, third, second)
		}
		return nil
	})
}

// TestReplicaKilledUnderLoad: replica a is killed with SIGKILL while it
// runs a 10,000-entry atomic batch and serves an agent's syncs. The batch
// is whole or absent (and whole if the CLI reported success); the agent,
// given both replicas, keeps serving its workload's SVID, fails over to
// replica b without re-attesting, and syncs a new entry created there.
func TestReplicaKilledUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test builds and runs processes")
	}
	t.Parallel()
	rs := newReplicaSet(t)
	a := rs.start(t, "replica-a")
	a.wait(t)
	b := rs.start(t, "replica-b")
	b.wait(t)
	bundlePath := filepath.Join(rs.dir, "bundle.pem")
	writeFile(t, bundlePath, a.bundlePEM(t))
	ag := startAgent(t, "agent", a, a.addr+","+b.addr, bundlePath)
	ag.register(t, a, "spiffe://example.org/kill/before")
	ag.svid(t, "spiffe://example.org/kill/before", 30*time.Second)
	if !strings.Contains(ag.p.out.String(), "server="+a.addr) {
		t.Fatalf("the agent is not connected to the first listed server %s", a.addr)
	}

	const n = 10000
	batchParent := "spiffe://example.org/node/batch"
	entries := make([]map[string]any, n)
	for i := range entries {
		entries[i] = map[string]any{
			"spiffe_id": fmt.Sprintf("spiffe://example.org/batch/svc-%05d", i),
			"parent_id": batchParent,
			"selectors": []string{"unix:uid:" + strconv.Itoa(10000+i)},
		}
	}
	data, err := json.Marshal(map[string]any{"entries": entries})
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(rs.dir, "batch.json")
	writeFile(t, file, string(data))

	batch := exec.Command(signetBin, "entry", "create", "--admin-socket", a.admin, "--file", file, "--atomic")
	var batchOut strings.Builder
	batch.Stdout, batch.Stderr = &batchOut, &batchOut
	if err := batch.Start(); err != nil {
		t.Fatal(err)
	}
	var batchErr error
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); batchErr = batch.Wait() }()
	// The batch's file is read and sent at once; the server spends most
	// of a second or more in the one transaction. Kill it meanwhile.
	time.Sleep(400 * time.Millisecond)
	if err := a.p.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = a.p.cmd.Wait()
	wg.Wait()

	// The agent keeps serving what it has, at once.
	ag.svid(t, "spiffe://example.org/kill/before", 5*time.Second)

	var listed struct {
		Entries []json.RawMessage `json:"entries"`
	}
	raw := signet(t, "entry", "list", "--admin-socket", b.admin, "--parent-id", batchParent, "--limit", "10000", "--json")
	if err := json.Unmarshal([]byte(raw), &listed); err != nil {
		t.Fatalf("entry list --json: %v", err)
	}
	got := len(listed.Entries)
	t.Logf("batch CLI: %v (%s); entries in the store: %d", batchErr, strings.TrimSpace(lastLine(batchOut.String())), got)
	switch {
	case batchErr == nil && got != n:
		t.Errorf("the batch was acknowledged but the store holds %d of its %d entries", got, n)
	case got != 0 && got != n:
		t.Errorf("the store holds %d of the batch's %d entries: an atomic batch must be whole or absent", got, n)
	}

	// Failover: a new entry created on replica b reaches the agent, over a
	// connection to replica b, with the agent SVID it had.
	ag.register(t, b, "spiffe://example.org/kill/after")
	ag.svid(t, "spiffe://example.org/kill/after", 30*time.Second)
	log := ag.p.out.String()
	if !strings.Contains(log, "connected to another server") || !strings.Contains(log, "server="+b.addr) {
		t.Errorf("the agent did not log its move to replica b (%s)", b.addr)
	}
	if c := strings.Count(log, "node attested"); c != 1 {
		t.Errorf("the agent attested %d times, want once (failover keeps the agent SVID)", c)
	}
}

// bundleIDs returns the x509 authority ids (hex subject key ids) of a PEM
// bundle.
func bundleIDs(t *testing.T, bundlePEM string) []string {
	t.Helper()
	var ids []string
	rest := []byte(bundlePEM)
	for {
		var block *pem.Block
		if block, rest = pem.Decode(rest); block == nil {
			return ids
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			t.Fatalf("bundle certificate: %v", err)
		}
		ids = append(ids, hex.EncodeToString(c.SubjectKeyId))
	}
}

// lastLine returns the last non-empty line of s.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
