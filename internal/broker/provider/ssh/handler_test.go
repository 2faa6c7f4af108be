package ssh

import (
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
	h := Handler(map[string]*Provider{"prod-ssh": a, "staging-ssh": b}, nil)

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
