package main

import (
	"strings"
	"testing"
)

func TestWriteEnv(t *testing.T) {
	cases := map[string]struct {
		data map[string]string
		want []string
		not  []string
	}{
		"postgres": {
			data: map[string]string{"username": "signet_ab", "password": "p w'd", "database": "orders"},
			want: []string{"export PGUSER=", "export PGPASSWORD='p w'\\''d'", "export PGDATABASE=", "export SIGNET_USERNAME="},
			not:  []string{"AWS_"},
		},
		"aws_sts": {
			data: map[string]string{"aws_access_key_id": "ASIA1", "aws_secret_access_key": "s", "aws_session_token": "t"},
			want: []string{"export AWS_ACCESS_KEY_ID=", "export AWS_SECRET_ACCESS_KEY=", "export AWS_SESSION_TOKEN=", "export SIGNET_AWS_SESSION_TOKEN="},
			not:  []string{"PGUSER"},
		},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			var b strings.Builder
			if err := writeEnv(&b, &credentialResult{LeaseID: "l1", Credential: name, ExpiresAt: "2026-12-02T00:00:00Z", Data: c.data}); err != nil {
				t.Fatal(err)
			}
			out := b.String()
			for _, w := range append(c.want, "export SIGNET_LEASE_ID=") {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			for _, n := range c.not {
				if strings.Contains(out, n) {
					t.Errorf("output has %q:\n%s", n, out)
				}
			}
		})
	}
}
