package credtemplate

import (
	"strings"
	"testing"
)

// FuzzTemplate parses and renders arbitrary template text over a
// credential: never a panic, and a missing field is always reported as one.
func FuzzTemplate(f *testing.F) {
	for _, s := range []string{"{{.username}}", "user={{.username}}\npassword={{.password}}", "Bearer {{.access_token}}",
		"{{.orders_db.username}}", "{{if .password}}x{{else}}y{{end}}", "{{range $k, $v := .}}{{$k}}={{$v}}\n{{end}}", "{{printf \"%q\" .lease_id}}"} {
		f.Add(s)
	}
	data := map[string]any{
		"orders_db": Fields("l1", "orders-db", "2026-12-02T10:00:00Z", map[string]string{"username": "u", "password": "p"}),
		"username":  "u", "password": "p", FieldLeaseID: "l1",
	}
	f.Fuzz(func(t *testing.T, text string) {
		// range over a large integer loops without output; bound the work.
		if strings.Contains(text, "range") && strings.ContainsAny(text, "0123456789") {
			return
		}
		tmpl, err := Parse("fuzz", text)
		if err != nil {
			return
		}
		out, err := tmpl.Execute(data)
		if err == nil && len(out) > MaxOutput {
			t.Fatalf("output of %d bytes exceeds MaxOutput", len(out))
		}
	})
}
