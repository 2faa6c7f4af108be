package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	adminv1 "github.com/signet-id/signet/internal/gen/signet/admin/v1"
	inventoryv1 "github.com/signet-id/signet/internal/gen/signet/inventory/v1"
	"github.com/signet-id/signet/internal/store"
)

func TestCoverageCommand(t *testing.T) {
	c := newCLIEnv(t, store.DriverSQLite)
	c.env.Attest(cliNode)
	c.mustRun(t, "agent", "label", cliNode, "environment=vm")
	c.createEntries(t, map[string]string{"owner": "payments"}, "/web")
	conn := &adminConn{socket: c.socket}
	if _, err := reportFindings(t.Context(), conn, "ci-1", map[string]string{"environment": "ci", "owner": "payments"}, []string{"/builds"},
		[]*inventoryv1.Finding{testFinding("0101010101010101", "/builds/a/.env"), testFinding("0202020202020202", "/builds/b/.env")}); err != nil {
		t.Fatal(err)
	}

	out := c.mustRun(t, "coverage")
	for _, want := range []string{"Coverage by environment", "First report of this view", "ENVIRONMENT", "STATIC OPEN", "COVERED",
		"ci ", "vm ", "total"} {
		if !strings.Contains(out, want) {
			t.Errorf("coverage lacks %q:\n%s", want, out)
		}
	}
	// One secret is gone from a rescan: the second report shows the change.
	if _, err := reportFindings(t.Context(), conn, "ci-1", nil, []string{"/builds"},
		[]*inventoryv1.Finding{testFinding("0101010101010101", "/builds/a/.env")}); err != nil {
		t.Fatal(err)
	}
	out = c.mustRun(t, "coverage", "--json")
	var rep coverageJSON
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("coverage --json: %v\n%s", err, out)
	}
	if rep.PreviousID == 0 || rep.Total.StaticOpen != 1 || rep.Total.Workloads != 1 || rep.Total.Delta == nil ||
		rep.Total.Delta.StaticOpen != -1 || rep.Total.CoveredPercent == nil || *rep.Total.CoveredPercent != 0 {
		t.Errorf("second coverage report = %+v, want 1 static open (-1), 1 workload, 0%% covered", rep)
	}
	ci := rep.Groups[0]
	if ci.Key != "ci" || ci.StaticOpen != 1 || ci.Delta == nil || ci.Delta.StaticOpen != -1 {
		t.Errorf("ci group = %+v", ci)
	}

	// An SVID minted for the workload but never served does not cover it.
	resp, err := c.env.Admin.ListEntries(c.env.Ctx(), &adminv1.ListEntriesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	eid := resp.GetEntries()[0].GetId()
	if err := c.st.TouchEntries(t.Context(), []string{eid}, time.Now()); err != nil {
		t.Fatal(err)
	}
	if out := c.mustRun(t, "coverage"); strings.Contains(out, "50.0%") {
		t.Errorf("a workload minted for but never served counts as covered:\n%s", out)
	}
	// The workload is served its SVID: it counts as covered from now on.
	if err := c.st.RecordServed(t.Context(), []store.Served{{EntryID: eid, First: time.Now(), Last: time.Now()}}); err != nil {
		t.Fatal(err)
	}
	out = c.mustRun(t, "coverage")
	if !strings.Contains(out, "Change since report #3") || !strings.Contains(out, "50.0%") || !strings.Contains(out, "+50.0") {
		t.Errorf("fourth coverage report lacks the change since #3 (50%%, +50 points):\n%s", out)
	}
	out = c.mustRun(t, "coverage", "--history", "5")
	if strings.Count(out, "\n") != 5 || !strings.Contains(out, "#4") || !strings.Contains(out, "#1") {
		t.Errorf("coverage --history = \n%s, want a header and four reports", out)
	}
	out = c.mustRun(t, "coverage", "--by", "owner")
	if !strings.Contains(out, "OWNER") || !strings.Contains(out, "payments") || !strings.Contains(out, "First report of this view") {
		t.Errorf("coverage --by owner =\n%s", out)
	}
	out = c.mustRun(t, "coverage", "--by", "path", "--depth", "2")
	if !strings.Contains(out, "/builds/a") || !strings.Contains(out, "/web") {
		t.Errorf("coverage --by path --depth 2 =\n%s", out)
	}
}
