// Package githubapp is the broker's provider of GitHub installation access
// tokens, the replacement for personal access tokens in CI and automation:
// Signet holds a GitHub App's private key, signs an app JWT (RS256, ten
// minutes at most), finds the app's installation on the configured
// repositories' owner, and asks for a token scoped to exactly those
// repositories and permissions. A token GitHub returns with any permission
// wider than configured is revoked at once and refused. Revoke deletes the
// token through GitHub's API (DELETE /installation/token); tokens also
// expire after an hour by GitHub's rule.
//
// A lease left pending by a crash between GitHub's answer and the lease's
// activation has no token to revoke (GitHub cannot list installation
// tokens): that token lives out its hour.
package githubapp

import (
	"bytes"
	"context"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/signet-id/signet/internal/broker/provider"
)

// Name is the provider's registry name and config value.
const Name = "github_app"

// DefaultAPIURL is GitHub.com's REST API.
const DefaultAPIURL = "https://api.github.com"

// Config is a github_app credential's configuration.
type Config struct {
	// AppID is the GitHub App's id.
	AppID int64 `yaml:"app_id"`
	// PrivateKeyFile holds the app's private key (PEM, as GitHub
	// downloads it); mode 0600 or stricter.
	PrivateKeyFile string `yaml:"private_key_file"`
	// Repositories are OWNER/NAME, all of one owner (one installation).
	Repositories []string `yaml:"repositories"`
	// Permissions are GitHub's permission names and levels (read, write,
	// admin), e.g. {contents: write}.
	Permissions map[string]string `yaml:"permissions"`
	// APIURL overrides https://api.github.com (GitHub Enterprise Server:
	// https://HOST/api/v3; tests).
	APIURL string `yaml:"api_url"`
}

var (
	repoRE = regexp.MustCompile(`^([A-Za-z0-9](?:[A-Za-z0-9-]{0,38}))/([A-Za-z0-9._-]{1,100})$`)
	permRE = regexp.MustCompile(`^[a-z][a-z_]{1,63}$`)
	levels = map[string]int{"read": 1, "write": 2, "admin": 3}
)

// Validate reports every problem of c, naming fields by their keys.
func (c *Config) Validate() error {
	var errs []error
	if c.AppID <= 0 {
		errs = append(errs, errors.New("app_id: required (the GitHub App's numeric id)"))
	}
	if c.PrivateKeyFile == "" {
		errs = append(errs, errors.New("private_key_file: required (the app's PEM private key)"))
	}
	if len(c.Repositories) == 0 {
		errs = append(errs, errors.New("repositories: list at least one OWNER/NAME; tokens never cover more than these"))
	}
	owner := ""
	for i, r := range c.Repositories {
		m := repoRE.FindStringSubmatch(r)
		if m == nil {
			errs = append(errs, fmt.Errorf("repositories[%d] %q: want OWNER/NAME", i, r))
			continue
		}
		if owner == "" {
			owner = m[1]
		} else if !strings.EqualFold(owner, m[1]) {
			errs = append(errs, fmt.Errorf("repositories[%d] %q: all repositories must belong to %s (one installation per credential)", i, r, owner))
		}
	}
	if len(c.Permissions) == 0 {
		errs = append(errs, errors.New("permissions: list at least one, e.g. {contents: read}; tokens never get more"))
	}
	for _, k := range slices.Sorted(maps.Keys(c.Permissions)) {
		if !permRE.MatchString(k) {
			errs = append(errs, fmt.Errorf("permissions.%s: not a GitHub permission name", k))
		}
		if _, ok := levels[c.Permissions[k]]; !ok {
			errs = append(errs, fmt.Errorf("permissions.%s %q: use read, write or admin", k, c.Permissions[k]))
		}
	}
	if c.APIURL != "" {
		if u, err := url.Parse(c.APIURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			errs = append(errs, fmt.Errorf("api_url %q: want a URL such as https://github.example.com/api/v3", c.APIURL))
		}
	}
	return errors.Join(errs...)
}

// ReadPrivateKey reads an RSA private key (PKCS#1 as GitHub issues it, or
// PKCS#8) from path, which must not be readable by others.
func ReadPrivateKey(path string) (*rsa.PrivateKey, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("private_key_file: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("private_key_file: %s has mode %04o: make it readable by the server only (chmod 600 %s)", path, fi.Mode().Perm(), path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("private_key_file: %w", err)
	}
	block, _ := pem.Decode(b)
	clear(b)
	if block == nil {
		return nil, fmt.Errorf("private_key_file: %s holds no PEM block", path)
	}
	defer clear(block.Bytes)
	if k, err := x509.ParsePKCS1PrivateKey(block.Bytes); err == nil {
		return k, nil
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("private_key_file: %s is not an RSA private key (PKCS#1 or PKCS#8)", path)
	}
	rk, ok := k.(*rsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("private_key_file: %s holds a %T, GitHub Apps use RSA keys", path, k)
	}
	return rk, nil
}

// Provider mints installation tokens for leases.
type Provider struct {
	credential string
	appID      int64
	signer     jose.Signer
	api        string
	owner      string
	repos      []string // names, without the owner
	perms      map[string]string
	hc         *http.Client
	now        func() time.Time

	mu       sync.Mutex // guards the cached app JWT
	jwt      string
	jwtUntil time.Time // when to sign a new one
}

var (
	_ provider.Provider = (*Provider)(nil)
	_ provider.Recaller = (*Provider)(nil)
)

// New returns the provider of credential; cfg must be valid; hc nil: a
// client with a 30 s timeout.
func New(credential string, cfg Config, key *rsa.PrivateKey, hc *http.Client, now func() time.Time) (*Provider, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: key}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return nil, fmt.Errorf("private_key_file: %w", err)
	}
	if cfg.APIURL == "" {
		cfg.APIURL = DefaultAPIURL
	}
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	if now == nil {
		now = time.Now
	}
	p := &Provider{credential: credential, appID: cfg.AppID, signer: signer, api: strings.TrimSuffix(cfg.APIURL, "/"),
		perms: cfg.Permissions, hc: hc, now: now}
	for _, r := range cfg.Repositories {
		owner, name, _ := strings.Cut(r, "/")
		p.owner = owner
		p.repos = append(p.repos, name)
	}
	return p, nil
}

// Recalls reports true: Revoke deletes the token at GitHub (see the
// package comment for a lease left pending by a crash).
func (*Provider) Recalls() bool { return true }

// appJWT is the app's own token, valid for nine minutes (GitHub allows
// ten), backdated a minute for clock drift as GitHub advises. One is
// reused for five minutes: an RS256 signature costs about 2 ms.
func (p *Provider) appJWT() (string, error) {
	now := p.now()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.jwt != "" && now.Before(p.jwtUntil) {
		return p.jwt, nil
	}
	tok, err := jwt.Signed(p.signer).Claims(jwt.Claims{
		Issuer: strconv.FormatInt(p.appID, 10), IssuedAt: jwt.NewNumericDate(now.Add(-time.Minute)),
		Expiry: jwt.NewNumericDate(now.Add(9 * time.Minute)),
	}).Serialize()
	if err != nil {
		return "", err
	}
	p.jwt, p.jwtUntil = tok, now.Add(5*time.Minute)
	return tok, nil
}

// ghError is GitHub's error body.
type ghError struct {
	Message string `json:"message"`
}

// call sends one API request with bearer auth and decodes a JSON answer
// into out when the status is want.
func (p *Provider) call(ctx context.Context, method, path, bearer string, body any, want int, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, p.api+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/vnd.github+json")
	req.Header.Set("X-GitHub-Api-Version", "2022-11-28")
	req.Header.Set("Authorization", "Bearer "+bearer)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := p.hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("cannot reach the GitHub API: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != want {
		var e ghError
		_ = json.Unmarshal(b, &e)
		return &StatusError{Status: resp.StatusCode, Message: e.Message}
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("GitHub answered HTTP %d without the expected JSON: %v", resp.StatusCode, err)
		}
	}
	return nil
}

// StatusError is a GitHub API error: its status and message.
type StatusError struct {
	Status  int
	Message string
}

func (e *StatusError) Error() string { return fmt.Sprintf("HTTP %d: %s", e.Status, e.Message) }

// Issue finds the installation and creates a token for the configured
// repositories and permissions.
func (p *Provider) Issue(ctx context.Context, r provider.Request) (provider.Credential, error) {
	fail := func(step string, err error) (provider.Credential, error) {
		return provider.Credential{}, fmt.Errorf("github_app credential %s: %s: %w", p.credential, step, err)
	}
	app, err := p.appJWT()
	if err != nil {
		return fail("sign app JWT", err)
	}
	var inst struct {
		ID int64 `json:"id"`
	}
	repo := p.owner + "/" + p.repos[0]
	if err := p.call(ctx, http.MethodGet, "/repos/"+p.owner+"/"+p.repos[0]+"/installation", app, nil, http.StatusOK, &inst); err != nil {
		return fail("find the app's installation on "+repo, err)
	}
	var tok struct {
		Token       string            `json:"token"`
		ExpiresAt   time.Time         `json:"expires_at"`
		Permissions map[string]string `json:"permissions"`
		Repos       []struct {
			FullName string `json:"full_name"`
		} `json:"repositories"`
	}
	body := map[string]any{"repositories": p.repos, "permissions": p.perms}
	if err := p.call(ctx, http.MethodPost, "/app/installations/"+strconv.FormatInt(inst.ID, 10)+"/access_tokens", app, body, http.StatusCreated, &tok); err != nil {
		return fail("create installation token", err)
	}
	if tok.Token == "" {
		return fail("create installation token", errors.New("GitHub returned no token"))
	}
	if err := p.checkScope(tok.Permissions, len(tok.Repos)); err != nil {
		if rerr := p.revoke(ctx, tok.Token); rerr != nil {
			err = fmt.Errorf("%w; revoking it failed too: %v", err, rerr)
		}
		return fail("installation token refused", err)
	}
	full := make([]string, 0, len(tok.Repos))
	for _, r := range tok.Repos {
		full = append(full, r.FullName)
	}
	perms, _ := json.Marshal(tok.Permissions)
	c := provider.Credential{
		Data: map[string]string{"token": tok.Token, "expires_at": tok.ExpiresAt.UTC().Format(time.RFC3339),
			"repositories": strings.Join(full, ","), "permissions": string(perms)},
		RevokeData: []byte(tok.Token),
	}
	if !tok.ExpiresAt.IsZero() && tok.ExpiresAt.Before(r.ExpiresAt) {
		c.ExpiresAt = tok.ExpiresAt
	}
	return c, nil
}

// checkScope refuses a token wider than configured: a permission not
// asked for (GitHub always adds metadata: read), a higher level, or more
// repositories.
func (p *Provider) checkScope(got map[string]string, repos int) error {
	for k, v := range got {
		want, ok := p.perms[k]
		if !ok && k == "metadata" && v == "read" {
			continue
		}
		if !ok || levels[v] > levels[want] || levels[v] == 0 {
			return fmt.Errorf("GitHub granted %s: %s, wider than the configured permissions", k, v)
		}
	}
	if repos > len(p.repos) {
		return fmt.Errorf("GitHub granted %d repositories, more than the %d configured", repos, len(p.repos))
	}
	return nil
}

// Revoke deletes the lease's token at GitHub. A token GitHub no longer
// knows (revoked or expired) is already revoked; a lease without revoke
// data (left pending) has none to delete.
func (p *Provider) Revoke(ctx context.Context, ref provider.Ref) error {
	if len(ref.RevokeData) == 0 {
		return nil
	}
	if err := p.revoke(ctx, string(ref.RevokeData)); err != nil {
		return fmt.Errorf("github_app credential %s: revoke installation token: %w", p.credential, err)
	}
	return nil
}

func (p *Provider) revoke(ctx context.Context, token string) error {
	err := p.call(ctx, http.MethodDelete, "/installation/token", token, nil, http.StatusNoContent, nil)
	var se *StatusError
	if errors.As(err, &se) && se.Status == http.StatusUnauthorized {
		return nil // Bad credentials: gone already
	}
	return err
}
