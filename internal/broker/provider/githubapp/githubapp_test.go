package githubapp_test

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-id/signet/internal/broker/provider"
	"github.com/signet-id/signet/internal/broker/provider/githubapp"
	"github.com/signet-id/signet/internal/broker/provider/remotetest"
)

func setup(t *testing.T) (*rsa.PrivateKey, *remotetest.GitHub) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return key, remotetest.NewGitHub(t, 123, &key.PublicKey, "acme", map[string]string{"contents": "write", "issues": "write"})
}

var req = provider.Request{LeaseID: "l", Subject: spiffeid.RequireFromString("spiffe://example.org/ci"), ExpiresAt: time.Now().Add(time.Hour)}

func TestIssueErrors(t *testing.T) {
	key, gh := setup(t)
	other, _ := rsa.GenerateKey(rand.Reader, 2048)
	for name, tc := range map[string]struct {
		key   *rsa.PrivateKey
		cfg   githubapp.Config
		widen map[string]string
		want  []string
	}{
		"not installed": {key, githubapp.Config{Repositories: []string{"elsewhere/app"}, Permissions: map[string]string{"contents": "read"}},
			nil, []string{"github_app credential gh-release", "find the app's installation on elsewhere/app", "HTTP 404: Not Found"}},
		"wrong key": {other, githubapp.Config{Repositories: []string{"acme/app"}, Permissions: map[string]string{"contents": "read"}},
			nil, []string{"HTTP 401: A JSON web token could not be decoded"}},
		"more than installed": {key, githubapp.Config{Repositories: []string{"acme/app"}, Permissions: map[string]string{"administration": "write"}},
			nil, []string{"create installation token", "HTTP 422: The permissions requested are not granted to this installation."}},
		"wider than asked": {key, githubapp.Config{Repositories: []string{"acme/app"}, Permissions: map[string]string{"contents": "read"}},
			map[string]string{"contents": "write", "metadata": "read"}, []string{"installation token refused", "GitHub granted contents: write, wider than the configured permissions"}},
	} {
		t.Run(name, func(t *testing.T) {
			tc.cfg.AppID, tc.cfg.PrivateKeyFile, tc.cfg.APIURL = 123, "unused", gh.URL
			gh.Widen(tc.widen)
			p, err := githubapp.New("gh-release", tc.cfg, tc.key, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			_, err = p.Issue(t.Context(), req)
			for _, w := range tc.want {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Errorf("Issue error = %v, want it to contain %q", err, w)
				}
			}
		})
	}
	gh.Widen(nil)
}

func TestReadPrivateKey(t *testing.T) {
	key, _ := setup(t)
	dir := t.TempDir()
	f := filepath.Join(dir, "k.pem")
	os.WriteFile(f, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}), 0o644)
	if _, err := githubapp.ReadPrivateKey(f); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("ReadPrivateKey(0644) = %v, want a mode error", err)
	}
	os.Chmod(f, 0o600)
	if k, err := githubapp.ReadPrivateKey(f); err != nil || !k.Equal(key) {
		t.Errorf("ReadPrivateKey = %v, want the key", err)
	}
	os.WriteFile(f, []byte("junk"), 0o600)
	if _, err := githubapp.ReadPrivateKey(f); err == nil || !strings.Contains(err.Error(), "no PEM block") {
		t.Errorf("ReadPrivateKey(junk) = %v, want no PEM block", err)
	}
}

func TestConfigValidate(t *testing.T) {
	c := githubapp.Config{Repositories: []string{"acme/app", "other/x", "bad"}, Permissions: map[string]string{"contents": "all"}}
	err := c.Validate()
	for _, w := range []string{"app_id", "private_key_file", "repositories[1]", "repositories[2]", "permissions.contents"} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("Validate() = %v, want it to name %s", err, w)
		}
	}
}
