package credtemplate

import (
	"errors"
	"strings"
	"testing"
)

func TestExecute(t *testing.T) {
	db := Fields("lease-1", "orders-db", "2026-12-02T10:00:00Z", map[string]string{"username": "v_etl_1", "password": "s3cret", "database": "orders"})
	api := Fields("lease-2", "partner-api", "2026-12-02T10:00:00Z", map[string]string{"access_token": "tok"})
	for _, tc := range []struct {
		name, text string
		data       map[string]any
		want       string
		wantErr    string // substring
		missing    string // the missing field, when wantErr is a MissingFieldError
	}{
		{name: "properties", text: "user={{.username}}\npassword={{.password}}\n", data: db, want: "user=v_etl_1\npassword=s3cret\n"},
		{name: "lease fields", text: "{{.lease_id}} {{.credential}} {{.expires_at}}", data: db, want: "lease-1 orders-db 2026-12-02T10:00:00Z"},
		{name: "bearer", text: "Bearer {{.access_token}}", data: api, want: "Bearer tok"},
		{name: "static text", text: "x", data: db, want: "x"},
		{name: "printf", text: `{{printf "%s@%s" .username .database}}`, data: db, want: "v_etl_1@orders"},
		{name: "missing field", text: "{{.access_token}}", data: db, missing: "access_token",
			wantErr: `the credential has no field "access_token"; it has credential, database, expires_at, lease_id, password, username`},
		{name: "nested", text: "{{.orders_db.username}}:{{.partner_api.access_token}}", data: map[string]any{"orders_db": db, "partner_api": api}, want: "v_etl_1:tok"},
		{name: "nested missing", text: "{{.partner_api.username}}", data: map[string]any{"orders_db": db, "partner_api": api}, missing: "username",
			wantErr: `.partner_api has no field "username"; it has access_token, credential, expires_at, lease_id`},
		{name: "unknown credential", text: "{{.billing.username}}", data: map[string]any{"orders_db": db}, missing: "billing",
			wantErr: `the credential has no field "billing"; it has orders_db`},
		{name: "too long", text: `{{range 2000000}}x{{end}}`, data: db, wantErr: "output longer than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tmpl, err := Parse("credentials[0].template", tc.text)
			if err != nil {
				t.Fatalf("Parse(%q) = %v", tc.text, err)
			}
			got, err := tmpl.Execute(tc.data)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.HasPrefix(err.Error(), "credentials[0].template: ") {
					t.Fatalf("Execute(%q) = %q, %v; want an error containing %q", tc.text, got, err, tc.wantErr)
				}
				var mf *MissingFieldError
				if tc.missing != "" && (!errors.As(err, &mf) || mf.Field != tc.missing) {
					t.Errorf("Execute(%q) error %v: want a MissingFieldError for %q", tc.text, err, tc.missing)
				}
				if strings.Contains(err.Error(), "s3cret") {
					t.Errorf("error %q holds the secret", err)
				}
				return
			}
			if err != nil || string(got) != tc.want {
				t.Errorf("Execute(%q) = %q, %v; want %q", tc.text, got, err, tc.want)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	for _, text := range []string{"{{.username", "{{end}}", "{{nosuchfunc .x}}", "{{template \"x\"}}x"} {
		_, err := Parse("--env PGUSER", text)
		if text == "{{template \"x\"}}x" {
			continue // undefined sub-templates fail at Execute
		}
		if err == nil || !strings.HasPrefix(err.Error(), "--env PGUSER:") {
			t.Errorf("Parse(%q) = %v; want an error starting with the name", text, err)
		}
	}
}
