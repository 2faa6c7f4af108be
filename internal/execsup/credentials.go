package execsup

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/signet-id/signet/internal/brokerclient"
	"github.com/signet-id/signet/internal/credtemplate"
)

// Getter requests one credential from the broker; *brokerclient.Client is
// one. A refusal is a *brokerclient.DeniedError.
type Getter interface {
	Get(ctx context.Context, r brokerclient.Request) (*brokerclient.Result, error)
}

// GetterFunc adapts a function to Getter.
type GetterFunc func(ctx context.Context, r brokerclient.Request) (*brokerclient.Result, error)

// Get calls f.
func (f GetterFunc) Get(ctx context.Context, r brokerclient.Request) (*brokerclient.Result, error) {
	return f(ctx, r)
}

// Env is one variable of the child's environment, rendered from the
// credentials: an --env NAME=TEMPLATE flag.
type Env struct {
	Name string
	tmpl *credtemplate.Template
}

// ParseEnv parses an --env flag, NAME=TEMPLATE. NAME is letters, digits
// and _, not starting with a digit; TEMPLATE is a Go text/template over
// the credentials' fields (see Credentials.Fetch for the data).
func ParseEnv(flag string) (Env, error) {
	name, text, ok := strings.Cut(flag, "=")
	if !ok || !validEnvName(name) {
		return Env{}, fmt.Errorf("--env %q: want NAME=TEMPLATE with NAME of letters, digits and _ (not starting with a digit), e.g. PGPASSWORD={{.password}}", flag)
	}
	t, err := credtemplate.Parse("--env "+name, text)
	if err != nil {
		return Env{}, err
	}
	return Env{Name: name, tmpl: t}, nil
}

func validEnvName(s string) bool {
	if s == "" || s[0] >= '0' && s[0] <= '9' {
		return false
	}
	for _, r := range s {
		if r != '_' && (r < 'a' || r > 'z') && (r < 'A' || r > 'Z') && (r < '0' || r > '9') {
			return false
		}
	}
	return true
}

// DataKey is the key under which a credential's fields are found when a
// command asks for several: its name with every character other than a
// letter, digit or _ turned into _ ("orders-db" → orders_db, so
// {{.orders_db.username}}).
func DataKey(credential string) string {
	return strings.Map(func(r rune) rune {
		if r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			return r
		}
		return '_'
	}, credential)
}

// Credentials are the credentials of one `signet exec` and how they make
// the child's environment. Create it with NewCredentials.
type Credentials struct {
	names   []string
	envs    []Env
	context map[string]string
	ttl     time.Duration
	getter  Getter
	now     func() time.Time
}

// CredentialsConfig configures NewCredentials.
type CredentialsConfig struct {
	// Names are the credentials to fetch (--credential), at least one.
	Names []string
	// Envs are the child's variables (--env), at least one.
	Envs []Env
	// Context is the task context sent with every request (--context).
	Context map[string]string
	// TTL is the lifetime asked for; zero: each credential's default_ttl.
	TTL time.Duration
	// Getter asks the broker; required.
	Getter Getter
	// Now is the clock the renewal time is computed on; nil: time.Now.
	Now func() time.Time
}

// NewCredentials checks cfg: names present, none twice, no two that share
// a DataKey, variables present and none twice.
func NewCredentials(cfg CredentialsConfig) (*Credentials, error) {
	if len(cfg.Names) == 0 {
		return nil, errors.New("--credential is required: the brokered credential whose fields the --env templates use")
	}
	keys := map[string]string{}
	for _, n := range cfg.Names {
		if n == "" {
			return nil, errors.New("--credential: empty name")
		}
		k := DataKey(n)
		if prev, dup := keys[k]; dup {
			if prev == n {
				return nil, fmt.Errorf("--credential %s is given twice", n)
			}
			return nil, fmt.Errorf("--credential %s and %s would both be {{.%s}}: fetch one of them per signet exec", prev, n, k)
		}
		keys[k] = n
	}
	if len(cfg.Envs) == 0 {
		return nil, errors.New("--env is required: NAME=TEMPLATE, e.g. --env PGPASSWORD={{.password}}")
	}
	seen := map[string]bool{}
	for _, e := range cfg.Envs {
		if e.tmpl == nil {
			return nil, fmt.Errorf("--env %s: not parsed with ParseEnv", e.Name)
		}
		if seen[e.Name] {
			return nil, fmt.Errorf("--env %s is given twice", e.Name)
		}
		seen[e.Name] = true
	}
	if cfg.TTL < 0 {
		return nil, errors.New("--ttl must be positive, e.g. 15m")
	}
	if cfg.Getter == nil {
		return nil, errors.New("execsup: no Getter")
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	return &Credentials{names: slices.Clone(cfg.Names), envs: slices.Clone(cfg.Envs), context: maps.Clone(cfg.Context),
		ttl: cfg.TTL, getter: cfg.Getter, now: now}, nil
}

// Fetch asks the broker for every credential once and renders the
// variables. With one credential the templates see its fields at the top
// ({{.username}}); with several, each credential's fields under its
// DataKey ({{.orders_db.username}}). The fields are the credential's data
// plus lease_id, credential and expires_at (credtemplate.Fields). A
// template naming a missing field fails with a *credtemplate.MissingFieldError;
// a refusal is the broker's *brokerclient.DeniedError, wrapped with the
// credential's name. The grant renews at 2/3 of the shortest lease's
// remaining life, counted from when Fetch started.
func (c *Credentials) Fetch(ctx context.Context) (*Grant, error) {
	start := c.now()
	g := &Grant{}
	results := make([]*brokerclient.Result, 0, len(c.names))
	for _, name := range c.names {
		res, err := c.getter.Get(ctx, brokerclient.Request{Credential: name, Context: c.context, TTL: c.ttl})
		if err != nil {
			return nil, fmt.Errorf("credential %s: %w", name, err)
		}
		exp := res.Expiry()
		if exp.IsZero() {
			return nil, fmt.Errorf("credential %s: the broker sent an expires_at that is not RFC 3339 (%q)", name, res.ExpiresAt)
		}
		if g.Expires.IsZero() || exp.Before(g.Expires) {
			g.Expires = exp
		}
		g.Leases = append(g.Leases, res.LeaseID)
		results = append(results, res)
	}
	g.RenewAt = start.Add(g.Expires.Sub(start) * 2 / 3)
	data := fields(results[0])
	if len(results) > 1 {
		data = make(map[string]any, len(results))
		for i, r := range results {
			data[DataKey(c.names[i])] = fields(r)
		}
	}
	for _, e := range c.envs {
		v, err := e.tmpl.Execute(data)
		if err != nil {
			return nil, err
		}
		if strings.IndexByte(string(v), 0) >= 0 {
			return nil, fmt.Errorf("--env %s: the rendered value holds a NUL byte, which an environment cannot carry", e.Name)
		}
		g.Env = append(g.Env, e.Name+"="+string(v))
	}
	return g, nil
}

func fields(r *brokerclient.Result) map[string]any {
	return credtemplate.Fields(r.LeaseID, r.Credential, r.ExpiresAt, r.Data)
}
