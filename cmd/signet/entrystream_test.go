package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc"

	adminv1 "github.com/signet-id/signet/internal/gen/signet/admin/v1"
	"github.com/signet-id/signet/internal/store"
)

// unaryOnlyAdmin is an admin server from before CreateEntriesStream and
// CreateEntryBatches: it answers CreateEntries by passing it to a real
// server, and nothing else.
type unaryOnlyAdmin struct {
	adminv1.UnimplementedAdminServer
	real adminv1.AdminClient
}

func (u unaryOnlyAdmin) CreateEntries(ctx context.Context, req *adminv1.CreateEntriesRequest) (*adminv1.CreateEntriesResponse, error) {
	return u.real.CreateEntries(ctx, req)
}

// unaryOnlySocket serves unaryOnlyAdmin in front of c's server and returns
// its socket.
func unaryOnlySocket(t *testing.T, c *cliEnv) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "signet-old-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "admin.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer(grpc.MaxRecvMsgSize(maxAdminMessage))
	adminv1.RegisterAdminServer(g, unaryOnlyAdmin{real: c.env.Admin})
	go g.Serve(ln)
	t.Cleanup(g.Stop)
	return sock
}

// volatile matches what differs between two servers creating the same
// entries: IDs and times.
var volatile = regexp.MustCompile(`"(id|created_at|updated_at)": "[^"]*"|(created |\(id |Entry ID: +)[0-9a-f-]{36}`)

// TestEntryCreateStreams: --atomic goes through CreateEntriesStream, and
// a file of entries each on its own through CreateEntryBatches; both print
// exactly what CreateEntries calls printed, on success and on failure, in
// text and JSON, and against a server without the streams they fall back
// to those calls.
func TestEntryCreateStreams(t *testing.T) {
	for _, mode := range []struct {
		name string
		args []string
	}{{"atomic", []string{"--atomic"}}, {"each", nil}} {
		t.Run(mode.name, func(t *testing.T) { testEntryCreateStream(t, mode.args) })
	}
}

func testEntryCreateStream(t *testing.T, modeArgs []string) {
	good := []any{
		map[string]any{"spiffe_id": "spiffe://example.org/a", "parent_id": cliNode,
			"selectors": []string{"unix:uid:9", "unix:gid:2", "k8s:ns:x"}, "x509_ttl": "2h", "jwt_ttl": "5m",
			"dns_names": []string{"a.example.org"}, "hint": "web", "labels": map[string]string{"team": "t1"},
			"expires_at": "2099-01-02T03:04:05Z"},
		map[string]any{"spiffe_id": "spiffe://example.org/b", "parent_id": cliNode, "selectors": []string{"unix:uid:1"}},
	}
	bad := append([]any{}, good...)
	bad = append(bad,
		map[string]any{"spiffe_id": "spiffe://other.org/x", "parent_id": cliNode, "selectors": []string{"unix:uid:3"}},
		good[1]) // a duplicate
	write := func(name string, doc any) string {
		data, _ := json.Marshal(doc)
		path := filepath.Join(t.TempDir(), name)
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	goodFile, badFile := write("good.json", good), write("bad.json", bad)
	// One entry alone is reported in full (as entry show prints it).
	oneFile := write("one.json", []any{map[string]any{"spiffe_id": "spiffe://example.org/one", "parent_id": cliNode,
		"selectors": []string{"unix:uid:7", "k8s:ns:y"}, "labels": map[string]string{"team": "t2"}}})

	streamed := newCLIEnv(t, store.DriverSQLite)
	unary := newCLIEnv(t, store.DriverSQLite)
	oldSock := unaryOnlySocket(t, unary)
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"failing text", []string{"--file", badFile}},
		{"failing json", []string{"--file", badFile, "--json"}},
		{"text", []string{"--file", goodFile}},
		{"one entry", []string{"--file", oneFile}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append(append([]string{"entry", "create"}, tc.args...), modeArgs...)
			got, _, gotErr := streamed.run(t, args...)
			want, _, wantErr := execCLI(t, append(args, "--admin-socket", oldSock)...)
			if (gotErr == nil) != (wantErr == nil) || (gotErr != nil && gotErr.Error() != wantErr.Error()) {
				t.Errorf("error = %v, want %v (the fallback's)", gotErr, wantErr)
			}
			if g, w := volatile.ReplaceAllString(got, "…"), volatile.ReplaceAllString(want, "…"); g != w {
				t.Errorf("output differs from CreateEntries':\n%s\nwant:\n%s", got, want)
			}
			if want == "" {
				t.Fatal("the fallback printed nothing")
			}
		})
	}
	// The created entries as stored, by both paths, in SPIFFE ID order
	// (entry list orders by the random IDs).
	list := func(sock string) []string {
		out, _, err := execCLI(t, "entry", "list", "--json", "--admin-socket", sock)
		if err != nil {
			t.Fatal(err)
		}
		var doc struct{ Entries []entryJSON }
		if err := json.Unmarshal([]byte(out), &doc); err != nil || len(doc.Entries) != 3 {
			t.Fatalf("entry list --json = %v\n%s", err, out)
		}
		var got []string
		for _, e := range doc.Entries {
			e.ID, e.CreatedAt, e.UpdatedAt = "", "", ""
			b, _ := json.Marshal(e)
			got = append(got, string(b))
		}
		slices.Sort(got)
		return got
	}
	if g, w := list(streamed.socket), list(unary.socket); !slices.Equal(g, w) {
		t.Errorf("entries created by the stream differ from CreateEntries':\n%s\nwant:\n%s", g, w)
	}
	// And the JSON the create printed equals what the store holds.
	third := newCLIEnv(t, store.DriverSQLite)
	out := third.mustRun(t, append([]string{"entry", "create", "--file", goodFile, "--json"}, modeArgs...)...)
	var printed struct {
		Results []struct {
			Entry entryJSON `json:"entry"`
		} `json:"results"`
	}
	if err := json.Unmarshal([]byte(out), &printed); err != nil || len(printed.Results) != 2 {
		t.Fatalf("create --json = %v\n%s", err, out)
	}
	for _, r := range printed.Results {
		shown := third.mustRun(t, "entry", "show", r.Entry.ID, "--json")
		var stored entryJSON
		if err := json.Unmarshal([]byte(shown), &stored); err != nil {
			t.Fatalf("entry show --json: %v\n%s", err, shown)
		}
		a, _ := json.Marshal(r.Entry)
		b, _ := json.Marshal(stored)
		if string(a) != string(b) {
			t.Errorf("create %v --json printed\n%s\nthe store holds\n%s", modeArgs, a, b)
		}
	}
	var ee *exitError
	if _, _, err := third.run(t, append([]string{"entry", "create", "--file", goodFile}, modeArgs...)...); !errors.As(err, &ee) || ee.code != 1 {
		t.Errorf("the same file again = %v, want exit 1 (already exists)", err)
	}
}

// TestEntryCreateFileSentWhileDecoding: a file of several batches is sent
// batch by batch while its later entries are still being decoded. An
// entry that fails on its own in the last batch (a value of the wrong
// type, an unknown field) fails alone, or, with --atomic, after earlier
// batches were sent, makes the server roll back every entry; the output
// is what the CreateEntries fallback prints, which decodes the whole file
// first. A document that is not well-formed at its very end creates
// nothing.
func TestEntryCreateFileSentWhileDecoding(t *testing.T) {
	n := 4*entryBatchSize + 11
	wrongType, unknown := n-3, n-1 // in the last batch
	items := make([]string, n)
	for i := range items {
		switch i {
		case wrongType:
			items[i] = fmt.Sprintf(`{"spiffe_id":"spiffe://example.org/s/%05d","parent_id":%q,"selectors":"unix:uid:1"}`, i, cliNode)
		case unknown:
			items[i] = fmt.Sprintf(`{"spiffe_id":"spiffe://example.org/s/%05d","parent_id":%q,"selectors":["unix:uid:1"],"ttl":"1h"}`, i, cliNode)
		default:
			items[i] = fmt.Sprintf(`{"spiffe_id":"spiffe://example.org/s/%05d","parent_id":%q,"selectors":["unix:uid:%d"]}`, i, cliNode, i)
		}
	}
	doc := `{"entries":[` + strings.Join(items, ",") + `]}`
	dir := t.TempDir()
	path, cut := filepath.Join(dir, "entries.json"), filepath.Join(dir, "cut.json")
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cut, []byte(doc[:len(doc)-2]), 0o600); err != nil {
		t.Fatal(err)
	}
	count := func(c *cliEnv) int {
		got, err := c.st.ListEntries(t.Context(), store.EntryFilter{Limit: 10 * n})
		if err != nil {
			t.Fatal(err)
		}
		return len(got)
	}
	unary := newCLIEnv(t, store.DriverSQLite)
	oldSock := unaryOnlySocket(t, unary)
	for _, mode := range []struct {
		name    string
		args    []string
		created int
	}{{"atomic", []string{"--atomic"}, 0}, {"each", nil, n - 2}} {
		t.Run(mode.name, func(t *testing.T) {
			c := newCLIEnv(t, store.DriverSQLite)
			if _, _, err := c.run(t, append([]string{"entry", "create", "--file", cut}, mode.args...)...); err == nil ||
				!strings.Contains(err.Error(), "ends too early") || count(c) != 0 {
				t.Fatalf("a file cut short = %v with %d entries created, want an error and none", err, count(c))
			}
			args := append([]string{"entry", "create", "--file", path}, mode.args...)
			got, _, err := c.run(t, args...)
			var ee *exitError
			if !errors.As(err, &ee) || ee.code != 1 || !strings.Contains(err.Error(), "entries failed") {
				t.Fatalf("create = %v, want exit 1 and a count", err)
			}
			for _, want := range []string{
				fmt.Sprintf("entry %d (spiffe://example.org/s/%05d): failed: selectors: want an array of strings, not a string", wrongType, wrongType),
				fmt.Sprintf(`entry %d (spiffe://example.org/s/%05d): failed: unknown field "ttl"`, unknown, unknown),
			} {
				if !strings.Contains(got, want) {
					t.Errorf("output lacks %q", want)
				}
			}
			if k := count(c); k != mode.created {
				t.Errorf("store holds %d entries, want %d", k, mode.created)
			}
			want, _, wantErr := execCLI(t, append(args, "--admin-socket", oldSock)...)
			if wantErr == nil || err.Error() != wantErr.Error() {
				t.Errorf("error = %v, want %v (the fallback's)", err, wantErr)
			}
			if g, w := volatile.ReplaceAllString(got, "…"), volatile.ReplaceAllString(want, "…"); g != w {
				t.Errorf("output differs from the CreateEntries fallback's")
			}
		})
	}
}
