package main

import (
	"crypto/rand"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/signet-id/signet/internal/store"
)

// fakeAWSCredentials returns a credentials file with a random, valid-looking
// key pair, made at test time.
func fakeAWSCredentials(t *testing.T) string {
	t.Helper()
	const upper, alnum = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	pick := func(set string, n int) string {
		b := make([]byte, n)
		if _, err := rand.Read(b); err != nil {
			t.Fatal(err)
		}
		for i := range b {
			b[i] = set[int(b[i])%len(set)]
		}
		return string(b)
	}
	return "[default]\naws_access_key_id = AKIA" + pick(upper, 16) + "\naws_secret_access_key = " + pick(alnum, 40) + "\n"
}

func TestScanReport(t *testing.T) {
	c := newCLIEnv(t, store.DriverSQLite)
	dir := t.TempDir()
	creds := writeFile(t, dir, "app/credentials", fakeAWSCredentials(t))
	scanArgs := []string{"--report", "--admin-socket", c.socket, "--label", "environment=legacy", "--label", "owner=payments",
		"--format", "json", dir}

	out, errOut, code := runScan(t, scanArgs...)
	if code != 1 || !strings.Contains(errOut, "reported to the inventory: 1 new") {
		t.Fatalf("scan --report = exit %d, stderr %q; want exit 1 and one new finding reported", code, errOut)
	}
	secret := strings.Split(fakeLine(t, creds, "aws_secret_access_key"), " = ")[1]
	if strings.Contains(out, secret) || strings.Contains(errOut, secret) {
		t.Fatal("scan output contains the secret")
	}

	openFindings := func() int {
		var open struct {
			Items []json.RawMessage `json:"items"`
		}
		if err := json.Unmarshal([]byte(c.mustRun(t, "inventory", "list", "--kind", "finding", "--json")), &open); err != nil {
			t.Fatal(err)
		}
		return len(open.Items)
	}
	if n := openFindings(); n != 1 {
		t.Fatalf("open findings after report: %d, want 1", n)
	}
	list := c.mustRun(t, "inventory", "list", "--kind", "finding", "--json")
	if !strings.Contains(list, `"environment": "legacy"`) || !strings.Contains(list, `"owner": "payments"`) ||
		!strings.Contains(list, filepath.Join(dir, "app", "credentials")) || strings.Contains(list, secret) {
		t.Fatalf("inventory after report:\n%s", list)
	}

	// The secret is removed; a complete re-scan of the same scope marks it gone.
	if err := os.Remove(creds); err != nil {
		t.Fatal(err)
	}
	_, errOut, code = runScan(t, scanArgs...)
	if code != 0 || !strings.Contains(errOut, "1 gone") {
		t.Fatalf("re-scan after removal = exit %d, stderr %q; want exit 0 and the finding gone", code, errOut)
	}
	if n := openFindings(); n != 0 {
		t.Errorf("open findings after removal: %d, want 0", n)
	}

	if _, errOut, code := runScan(t, "--label", "owner=x", dir); code != 2 || !strings.Contains(errOut, "only apply with --report") {
		t.Errorf("--label without --report = exit %d, %q; want exit 2 and an explanation", code, errOut)
	}
}

func fakeLine(t *testing.T, path, key string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(l, key) {
			return l
		}
	}
	t.Fatalf("%s has no %s line", path, key)
	return ""
}
