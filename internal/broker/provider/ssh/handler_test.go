package ssh

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/signet-id/signet/internal/broker/provider"
)

func get(t *testing.T, h http.Handler, target, etag string) *http.Response {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, target, nil)
	if etag != "" {
		req.Header.Set("If-None-Match", etag)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Result()
}

// TestHandler serves both CAs and one KRL that ssh-keygen reads: the
// revoked certificate of one CA is found, the other CA's is not.
func TestHandler(t *testing.T) {
	a, b := newProvider(t, Config{}), newProvider(t, Config{})
	h := Handler(map[string]*Provider{"prod-ssh": a, "staging-ssh": b}, nil, nil)

	res := get(t, h, PathCA, "")
	body, _ := io.ReadAll(res.Body)
	if res.StatusCode != 200 || string(body) != a.CAPublicKey()+b.CAPublicKey() {
		t.Fatalf("GET %s = %d %q", PathCA, res.StatusCode, body)
	}
	res = get(t, h, PathCA+"?credential=staging-ssh", "")
	body, _ = io.ReadAll(res.Body)
	if string(body) != b.CAPublicKey() {
		t.Errorf("GET ?credential=staging-ssh = %q", body)
	}
	if res := get(t, h, PathKRL+"?credential=nope", ""); res.StatusCode != http.StatusNotFound {
		t.Errorf("unknown credential: %d, want 404", res.StatusCode)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, PathKRL, nil))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST = %d, want 405", rec.Code)
	}

	_, pub := clientKey(t)
	dir := t.TempDir()
	files := map[string]string{}
	for name, p := range map[string]*Provider{"a": a, "b": b} {
		c, err := p.Issue(t.Context(), request("lease-"+name, pub, time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		files[name] = filepath.Join(dir, name+"-cert.pub")
		os.WriteFile(files[name], []byte(c.Data["certificate"]+"\n"), 0o600)
	}
	before := get(t, h, PathKRL, "")
	etag := before.Header.Get("ETag")
	if before.Header.Get("Cache-Control") != "no-cache" || etag == "" {
		t.Errorf("KRL headers = %v", before.Header)
	}
	if res := get(t, h, PathKRL, etag); res.StatusCode != http.StatusNotModified {
		t.Errorf("unchanged KRL with If-None-Match = %d, want 304", res.StatusCode)
	}
	if err := a.Revoke(t.Context(), provider.Ref{LeaseID: "lease-a"}); err != nil {
		t.Fatal(err)
	}
	after := get(t, h, PathKRL, etag)
	if after.StatusCode != 200 {
		t.Fatalf("KRL after a revoke with the old ETag = %d, want 200", after.StatusCode)
	}
	krl, _ := io.ReadAll(after.Body)
	krlPath := filepath.Join(dir, "krl")
	os.WriteFile(krlPath, krl, 0o600)
	if _, err := exec.LookPath("ssh-keygen"); err != nil {
		t.Skip("ssh-keygen not installed")
	}
	if out, err := exec.Command("ssh-keygen", "-Q", "-f", krlPath, files["a"]).CombinedOutput(); err == nil || !strings.Contains(string(out), "REVOKED") {
		t.Errorf("ssh-keygen -Q (revoked, CA a) = %s, %v", out, err)
	}
	if out, err := exec.Command("ssh-keygen", "-Q", "-f", krlPath, files["b"]).CombinedOutput(); err != nil {
		t.Errorf("ssh-keygen -Q (CA b) = %s, %v", out, err)
	}
}

// TestHandlerListsTheStoresRevocations: a revocation made on another
// replica (known only to the store) is in this replica's KRL, ssh-keygen
// finds the certificate revoked, the ETag stays put while nothing changes,
// and a store that cannot be read answers 503, never a KRL that could miss
// a revocation.
func TestHandlerListsTheStoresRevocations(t *testing.T) {
	if _, err := exec.LookPath("ssh-keygen"); err != nil {
		t.Skip("ssh-keygen not installed")
	}
	p := newProvider(t, Config{})
	_, pub := clientKey(t)
	dir := t.TempDir()
	var certs []string
	for _, id := range []string{"lease-1", "lease-2"} {
		c, err := p.Issue(t.Context(), request(id, pub, time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		f := filepath.Join(dir, id+"-cert.pub")
		os.WriteFile(f, []byte(c.Data["certificate"]+"\n"), 0o600)
		certs = append(certs, f)
	}
	clock := time.Now()
	revoked, failing := []string{}, false
	h := Handler(map[string]*Provider{"prod-ssh": p}, func() time.Time { return clock }, func(_ context.Context, credential string, _ time.Time) ([]string, error) {
		if credential != "prod-ssh" {
			t.Errorf("revoked leases asked for %q", credential)
		}
		if failing {
			return nil, errors.New("store down")
		}
		return revoked, nil
	})
	krl := func() ([]byte, string) {
		t.Helper()
		res := get(t, h, PathKRL, "")
		b, _ := io.ReadAll(res.Body)
		if res.StatusCode != 200 {
			t.Fatalf("GET %s = %d %s", PathKRL, res.StatusCode, b)
		}
		return b, res.Header.Get("ETag")
	}
	query := func(b []byte, cert string) bool {
		t.Helper()
		path := filepath.Join(dir, "krl")
		os.WriteFile(path, b, 0o600)
		out, err := exec.Command("ssh-keygen", "-Q", "-f", path, cert).CombinedOutput()
		return err != nil && strings.Contains(string(out), "REVOKED")
	}
	_, tag := krl()
	revoked = []string{"lease-2"} // revoked on another replica
	clock = clock.Add(time.Second)
	b, tag2 := krl()
	if tag2 == tag {
		t.Error("the KRL kept its ETag after a revocation in the store")
	}
	if query(b, certs[0]) || !query(b, certs[1]) {
		t.Errorf("ssh-keygen -Q: lease-1 revoked %v, lease-2 revoked %v; want only lease-2", query(b, certs[0]), query(b, certs[1]))
	}
	clock = clock.Add(time.Minute)
	if _, tag3 := krl(); tag3 != tag2 {
		t.Error("an unchanged KRL changed its ETag as time passed")
	}
	failing = true
	if res := get(t, h, PathKRL, ""); res.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("KRL with the store down = %d, want 503", res.StatusCode)
	}
}
