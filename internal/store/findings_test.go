package store_test

import (
	"testing"

	"github.com/signet-id/signet/internal/store"
)

func TestInScope(t *testing.T) {
	cases := []struct {
		path  string
		scope []string
		want  bool
	}{
		{"/srv/app/x.env", []string{"/srv"}, true},
		{"/srv", []string{"/srv"}, true},
		{"/srv2/x.env", []string{"/srv"}, false},
		{"/srv2/x.env", []string{"/srv/"}, false},
		{"/srv/x.env", []string{"/srv/"}, true},
		{"env:AWS_SECRET_ACCESS_KEY", []string{"env:"}, true},
		{"env:AWS_SECRET_ACCESS_KEY", []string{"/"}, false},
		{"/etc/x", []string{"/"}, true},
		{"repo/config.yml", []string{"repo"}, true},
		{"repository/config.yml", []string{"repo"}, false},
		{"/x", nil, false},
		{"/x", []string{""}, false},
	}
	for _, c := range cases {
		if got := store.InScope(c.path, c.scope); got != c.want {
			t.Errorf("InScope(%q, %q) = %v, want %v", c.path, c.scope, got, c.want)
		}
	}
}
