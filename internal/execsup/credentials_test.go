package execsup

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/signet-id/signet/internal/brokerclient"
	"github.com/signet-id/signet/internal/credtemplate"
)

var t0 = time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)

// broker answers like the token endpoint would: each credential's data,
// a fresh lease ID per request and the given lifetime.
type broker struct {
	data  map[string]map[string]string
	ttl   map[string]time.Duration
	deny  map[string]bool
	asked []brokerclient.Request
}

func (b *broker) Get(_ context.Context, r brokerclient.Request) (*brokerclient.Result, error) {
	b.asked = append(b.asked, r)
	if b.deny[r.Credential] {
		return nil, &brokerclient.DeniedError{Status: 400, Code: "unauthorized_client", Description: "no rule allows " + r.Credential}
	}
	d, ok := b.data[r.Credential]
	if !ok {
		return nil, &brokerclient.DeniedError{Status: 400, Code: "invalid_target", Description: "unknown credential " + r.Credential}
	}
	exp := "not a time"
	if ttl, ok := b.ttl[r.Credential]; ok {
		exp = t0.Add(ttl).Format(time.RFC3339)
	}
	return &brokerclient.Result{LeaseID: "lease-" + r.Credential, Credential: r.Credential, ExpiresAt: exp, Data: d}, nil
}

func envs(t *testing.T, flags ...string) []Env {
	t.Helper()
	var out []Env
	for _, f := range flags {
		e, err := ParseEnv(f)
		if err != nil {
			t.Fatalf("ParseEnv(%q) = %v", f, err)
		}
		out = append(out, e)
	}
	return out
}

func TestFetch(t *testing.T) {
	b := &broker{
		data: map[string]map[string]string{
			"orders-db":   {"username": "v_etl_1", "password": "s3cret"},
			"partner-api": {"access_token": "tok"},
			"nul":         {"value": "a\x00b"},
		},
		ttl:  map[string]time.Duration{"orders-db": 15 * time.Minute, "partner-api": 3 * time.Minute, "nul": time.Minute},
		deny: map[string]bool{"billing": true},
	}
	b.data["no-expiry"] = map[string]string{"value": "x"}
	for _, tc := range []struct {
		name        string
		creds       []string
		env         []string
		want        []string
		wantExpires time.Duration // from t0
		wantErr     string
		missing     string // the field a *credtemplate.MissingFieldError names
		denied      bool
	}{
		{name: "one credential", creds: []string{"orders-db"}, env: []string{"PGUSER={{.username}}", "PGPASSWORD={{.password}}", "LEASE={{.lease_id}}"},
			want: []string{"PGUSER=v_etl_1", "PGPASSWORD=s3cret", "LEASE=lease-orders-db"}, wantExpires: 15 * time.Minute},
		{name: "several credentials", creds: []string{"orders-db", "partner-api"},
			env:  []string{"PGUSER={{.orders_db.username}}", "TOKEN=Bearer {{.partner_api.access_token}}"},
			want: []string{"PGUSER=v_etl_1", "TOKEN=Bearer tok"}, wantExpires: 3 * time.Minute},
		{name: "missing field", creds: []string{"orders-db"}, env: []string{"TOKEN={{.access_token}}"}, missing: "access_token",
			wantErr: `--env TOKEN: the credential has no field "access_token"; it has credential, expires_at, lease_id, password, username`},
		{name: "missing field of one of several", creds: []string{"orders-db", "partner-api"}, env: []string{"U={{.partner_api.username}}"}, missing: "username",
			wantErr: `--env U: .partner_api has no field "username"`},
		{name: "top-level field with several", creds: []string{"orders-db", "partner-api"}, env: []string{"U={{.username}}"}, missing: "username",
			wantErr: `the credential has no field "username"; it has orders_db, partner_api`},
		{name: "denied", creds: []string{"orders-db", "billing"}, env: []string{"U={{.orders_db.username}}"}, denied: true,
			wantErr: "credential billing: unauthorized_client: no rule allows billing"},
		{name: "NUL in a value", creds: []string{"nul"}, env: []string{"V={{.value}}"}, wantErr: "--env V: the rendered value holds a NUL byte"},
		{name: "bad expires_at", creds: []string{"no-expiry"}, env: []string{"V={{.value}}"}, wantErr: `credential no-expiry: the broker sent an expires_at that is not RFC 3339 ("not a time")`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := NewCredentials(CredentialsConfig{Names: tc.creds, Envs: envs(t, tc.env...), Context: map[string]string{"ticket": "CHG-1"},
				TTL: 5 * time.Minute, Getter: b, Now: func() time.Time { return t0 }})
			if err != nil {
				t.Fatal(err)
			}
			g, err := c.Fetch(t.Context())
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Fetch() = %v, %v; want an error with %q", g, err, tc.wantErr)
				}
				var mf *credtemplate.MissingFieldError
				if tc.missing != "" && (!errors.As(err, &mf) || mf.Field != tc.missing) {
					t.Errorf("Fetch() = %v; want a MissingFieldError for %q", err, tc.missing)
				}
				if brokerclient.IsDenied(err) != tc.denied {
					t.Errorf("IsDenied(%v) = %v, want %v", err, !tc.denied, tc.denied)
				}
				return
			}
			if err != nil {
				t.Fatalf("Fetch() = %v", err)
			}
			if diff := cmp.Diff(tc.want, g.Env); diff != "" {
				t.Errorf("Fetch().Env (-want +got):\n%s", diff)
			}
			if want := t0.Add(tc.wantExpires); !g.Expires.Equal(want) {
				t.Errorf("Fetch().Expires = %v, want %v (the shortest lease)", g.Expires, want)
			}
			if want := t0.Add(tc.wantExpires * 2 / 3); !g.RenewAt.Equal(want) {
				t.Errorf("Fetch().RenewAt = %v, want %v (2/3 of the shortest lease)", g.RenewAt, want)
			}
			if len(g.Leases) != len(tc.creds) {
				t.Errorf("Fetch().Leases = %v, want one per credential", g.Leases)
			}
		})
	}
	for _, r := range b.asked {
		if r.TTL != 5*time.Minute || r.Context["ticket"] != "CHG-1" {
			t.Errorf("request %+v: want ttl 5m and context ticket=CHG-1", r)
		}
	}
}

func TestParseEnv(t *testing.T) {
	for flag, wantErr := range map[string]string{
		"PGUSER={{.username}}": "",
		"_X=literal":           "",
		"X=":                   "",
		"X=a=b":                "",
		"PGUSER":               `--env "PGUSER": want NAME=TEMPLATE`,
		"=x":                   `--env "=x": want NAME=TEMPLATE`,
		"1X=x":                 `--env "1X=x": want NAME=TEMPLATE`,
		"PG-USER=x":            `--env "PG-USER=x": want NAME=TEMPLATE`,
		"X={{.username":        `--env X:1: unclosed action`,
	} {
		e, err := ParseEnv(flag)
		if wantErr == "" {
			if name, _, _ := strings.Cut(flag, "="); err != nil || e.Name != name {
				t.Errorf("ParseEnv(%q) = %+v, %v; want %s", flag, e, err, name)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Errorf("ParseEnv(%q) = %v, want an error with %q", flag, err, wantErr)
		}
	}
}

func TestNewCredentials(t *testing.T) {
	b := &broker{}
	for _, tc := range []struct {
		name    string
		cfg     CredentialsConfig
		wantErr string
	}{
		{"no credential", CredentialsConfig{Envs: envs(t, "X=x"), Getter: b}, "--credential is required"},
		{"no env", CredentialsConfig{Names: []string{"a"}, Getter: b}, "--env is required"},
		{"credential twice", CredentialsConfig{Names: []string{"a", "a"}, Envs: envs(t, "X=x"), Getter: b}, "--credential a is given twice"},
		{"same data key", CredentialsConfig{Names: []string{"orders-db", "orders.db"}, Envs: envs(t, "X=x"), Getter: b},
			"--credential orders-db and orders.db would both be {{.orders_db}}"},
		{"env twice", CredentialsConfig{Names: []string{"a"}, Envs: envs(t, "X=x", "X=y"), Getter: b}, "--env X is given twice"},
		{"negative ttl", CredentialsConfig{Names: []string{"a"}, Envs: envs(t, "X=x"), TTL: -time.Second, Getter: b}, "--ttl must be positive"},
		{"unparsed env", CredentialsConfig{Names: []string{"a"}, Envs: []Env{{Name: "X"}}, Getter: b}, "--env X: not parsed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := NewCredentials(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("NewCredentials() = %v, want an error with %q", err, tc.wantErr)
			}
		})
	}
}

func TestDataKey(t *testing.T) {
	for in, want := range map[string]string{"orders-db": "orders_db", "a.b-c_d": "a_b_c_d", "plain": "plain", "ünï": "_n_"} {
		if got := DataKey(in); got != want {
			t.Errorf("DataKey(%q) = %q, want %q", in, got, want)
		}
	}
}
