package adminapi_test

import (
	"fmt"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	adminv1 "github.com/signet-id/signet/internal/gen/signet/admin/v1"
	commonv1 "github.com/signet-id/signet/internal/gen/signet/common/v1"
	"github.com/signet-id/signet/internal/server"
	"github.com/signet-id/signet/internal/testenv"
)

func entryOf(spiffeID, parentID, uid string) *commonv1.Entry {
	return &commonv1.Entry{SpiffeId: spiffeID, ParentId: parentID,
		Selectors: []*commonv1.Selector{{Type: "unix", Value: "uid:" + uid}}}
}

// create creates one entry and returns its status.
func create(t *testing.T, env *testenv.Env, e *commonv1.Entry) (codes.Code, string, *commonv1.Entry) {
	t.Helper()
	resp, err := env.Admin.CreateEntries(env.Ctx(), &adminv1.CreateEntriesRequest{Entries: []*commonv1.Entry{e}})
	if err != nil {
		t.Fatalf("CreateEntries: %v", err)
	}
	r := resp.GetResults()[0]
	return codes.Code(r.GetStatus().GetCode()), r.GetStatus().GetMessage(), r.GetEntry()
}

func wantStatus(t *testing.T, call string, code codes.Code, msg string, want codes.Code, word string) {
	t.Helper()
	if code != want || !strings.Contains(msg, word) {
		t.Errorf("%s = %s %q, want %s mentioning %q", call, code, msg, want, word)
	}
}

// TestEntryIdentityRules: entries may not carry the bare trust-domain ID,
// a reserved /signet/ ID, or a node's identity: an attested node's ID, a
// pending join token's, a node alias's.
func TestEntryIdentityRules(t *testing.T) {
	env := testenv.New(t)
	serverID := server.ServerID(env.TrustDomain).String()
	env.Attest(nodeA)
	env.JoinToken("spiffe://example.org/node/pending")
	if c, msg, _ := create(t, env, entryOf("spiffe://example.org/cluster/web", serverID, "1")); c != codes.OK {
		t.Fatalf("create node alias: %s %s", c, msg)
	}
	if c, msg, _ := create(t, env, entryOf("spiffe://example.org/web", nodeA, "1")); c != codes.OK {
		t.Fatalf("create workload entry: %s %s", c, msg)
	}

	tests := []struct {
		name  string
		entry *commonv1.Entry
		code  codes.Code
		word  string
	}{
		{"bare trust domain as spiffe_id", entryOf("spiffe://example.org", nodeA, "2"), codes.InvalidArgument, "spiffe_id"},
		{"bare trust domain as parent_id", entryOf("spiffe://example.org/x", "spiffe://example.org", "2"), codes.InvalidArgument, "parent_id"},
		{"reserved spiffe_id", entryOf("spiffe://example.org/signet/agent/x", nodeA, "2"), codes.InvalidArgument, "reserved"},
		{"reserved /signet itself", entryOf("spiffe://example.org/signet", nodeA, "2"), codes.InvalidArgument, "reserved"},
		{"server id as spiffe_id", entryOf(serverID, nodeA, "2"), codes.InvalidArgument, "reserved"},
		{"reserved parent_id is fine", entryOf("spiffe://example.org/job", "spiffe://example.org/signet/agent/join_token/ab", "2"), codes.OK, ""},
		// The hole: uid 4444 on node A would get an SVID with node A's identity.
		{"node's own id", entryOf(nodeA, nodeA, "4444"), codes.AlreadyExists, "attested node"},
		{"pending join token's id", entryOf("spiffe://example.org/node/pending", nodeA, "4444"), codes.AlreadyExists, "join token"},
		{"node alias's id", entryOf("spiffe://example.org/cluster/web", nodeA, "4444"), codes.AlreadyExists, "node alias"},
		{"another alias with the same id", entryOf("spiffe://example.org/cluster/web", serverID, "2"), codes.OK, ""},
		{"alias with a workload's id", entryOf("spiffe://example.org/web", serverID, "2"), codes.AlreadyExists, "workload entry"},
		{"alias with a node's id", entryOf(nodeA, serverID, "2"), codes.AlreadyExists, "attested node"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, msg, _ := create(t, env, tt.entry)
			wantStatus(t, "CreateEntries", code, msg, tt.code, tt.word)
			if tt.code != codes.OK && tt.code != codes.InvalidArgument && !strings.Contains(msg, "spiffe_id") {
				t.Errorf("CreateEntries = %q, want it to name spiffe_id", msg)
			}
		})
	}

	t.Run("update to a node's id", func(t *testing.T) {
		_, _, e := create(t, env, entryOf("spiffe://example.org/movable", nodeA, "5"))
		e.SpiffeId = nodeA
		_, err := env.Admin.UpdateEntry(env.Ctx(), &adminv1.UpdateEntryRequest{Entry: e, UpdateMask: []string{"spiffe_id"}})
		wantStatus(t, "UpdateEntry", status.Code(err), status.Convert(err).Message(), codes.AlreadyExists, "attested node")
		e.SpiffeId = "spiffe://example.org"
		_, err = env.Admin.UpdateEntry(env.Ctx(), &adminv1.UpdateEntryRequest{Entry: e, UpdateMask: []string{"spiffe_id"}})
		wantStatus(t, "UpdateEntry", status.Code(err), status.Convert(err).Message(), codes.InvalidArgument, "spiffe_id")
	})
	t.Run("update an alias into a workload entry under a shared alias id", func(t *testing.T) {
		_, _, e := create(t, env, entryOf("spiffe://example.org/cluster/web", serverID, "6"))
		e.ParentId = nodeA
		_, err := env.Admin.UpdateEntry(env.Ctx(), &adminv1.UpdateEntryRequest{Entry: e, UpdateMask: []string{"parent_id"}})
		wantStatus(t, "UpdateEntry", status.Code(err), status.Convert(err).Message(), codes.AlreadyExists, "node alias")
	})
	t.Run("batch mixing an alias and a workload entry", func(t *testing.T) {
		resp, err := env.Admin.CreateEntries(env.Ctx(), &adminv1.CreateEntriesRequest{Entries: []*commonv1.Entry{
			entryOf("spiffe://example.org/mixed", serverID, "7"), entryOf("spiffe://example.org/mixed", nodeA, "7"),
		}})
		if err != nil {
			t.Fatal(err)
		}
		r := resp.GetResults()[1]
		wantStatus(t, "CreateEntries[1]", codes.Code(r.GetStatus().GetCode()), r.GetStatus().GetMessage(), codes.AlreadyExists, "node alias")
	})
}

// TestJoinTokenIdentityRules: a join token may not grant the bare
// trust-domain ID, a reserved ID or an entry's identity; naming an attested
// node again (re-attestation) stays allowed.
func TestJoinTokenIdentityRules(t *testing.T) {
	env := testenv.New(t)
	env.Attest(nodeA)
	if c, msg, _ := create(t, env, entryOf("spiffe://example.org/web", nodeA, "1")); c != codes.OK {
		t.Fatalf("create entry: %s %s", c, msg)
	}
	if c, msg, _ := create(t, env, entryOf("spiffe://example.org/cluster/web", server.ServerID(env.TrustDomain).String(), "1")); c != codes.OK {
		t.Fatalf("create node alias: %s %s", c, msg)
	}
	tests := []struct {
		name, id string
		code     codes.Code
		word     string
	}{
		{"bare trust domain", "spiffe://example.org", codes.InvalidArgument, "spiffe_id"},
		{"server id", server.ServerID(env.TrustDomain).String(), codes.InvalidArgument, "reserved"},
		{"reserved agent id", "spiffe://example.org/signet/agent/join_token/0123", codes.InvalidArgument, "reserved"},
		{"an entry's id", "spiffe://example.org/web", codes.AlreadyExists, "spiffe_id"},
		{"a node alias's id", "spiffe://example.org/cluster/web", codes.AlreadyExists, "spiffe_id"},
		{"an attested node's id", nodeA, codes.OK, ""},
		{"derived id", "", codes.OK, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := env.Admin.CreateJoinToken(env.Ctx(), &adminv1.CreateJoinTokenRequest{SpiffeId: tt.id})
			wantStatus(t, "CreateJoinToken", status.Code(err), status.Convert(err).Message(), tt.code, tt.word)
		})
	}
}

// TestIdentityRulesUnderConcurrency: the checks run inside the store's
// write transaction, so of racing admin calls that would together break a
// rule, at most one succeeds.
func TestIdentityRulesUnderConcurrency(t *testing.T) {
	env := testenv.New(t)
	serverID := server.ServerID(env.TrustDomain).String()
	for i := range 10 {
		id := fmt.Sprintf("spiffe://example.org/race/%d", i)
		var wg sync.WaitGroup
		var mu sync.Mutex
		ok := 0
		calls := []func() bool{
			func() bool { c, _, _ := create(t, env, entryOf(id, serverID, "1")); return c == codes.OK },
			func() bool { c, _, _ := create(t, env, entryOf(id, nodeA, "1")); return c == codes.OK },
			func() bool {
				_, err := env.Admin.CreateJoinToken(env.Ctx(), &adminv1.CreateJoinTokenRequest{SpiffeId: id})
				return err == nil
			},
		}
		for _, call := range calls {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if call() {
					mu.Lock()
					ok++
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		if ok != 1 {
			t.Errorf("%s: %d of 3 racing claims (alias, workload entry, join token) succeeded, want exactly 1", id, ok)
		}
	}
}
