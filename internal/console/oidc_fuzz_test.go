package console

import (
	"net/http"
	"testing"
	"time"
)

// FuzzSessionCookie: a browser's cookie is accepted only when this server
// signed it and it has not expired; anything else is refused, never a
// panic.
func FuzzSessionCookie(f *testing.F) {
	now := time.Unix(1_800_000_000, 0)
	l, err := newOIDCLogin(OIDCConfig{Issuer: "https://idp.example", ClientID: "c", RedirectURL: "https://console.example/auth/callback",
		AllowedSubjects: []string{"x"}}, func() time.Time { return now }, func(string, ...any) {})
	if err != nil {
		f.Fatal(err)
	}
	good := l.seal(cookieSession, session{Subject: "u-1", Expires: now.Add(time.Hour).Unix()})
	f.Add(good)
	f.Add(l.seal(cookieLogin, pending{State: "s", Expires: now.Add(time.Hour).Unix()}))
	f.Add("e30.AAAA")
	f.Add("")
	f.Fuzz(func(t *testing.T, v string) {
		r, _ := http.NewRequest(http.MethodGet, "https://console.example/", nil)
		r.AddCookie(&http.Cookie{Name: cookieSession, Value: v})
		s, err := l.current(r)
		if err != nil {
			return
		}
		if v != good && l.seal(cookieSession, s) != v {
			t.Fatalf("accepted a cookie this server did not sign: %q → %+v", v, s)
		}
	})
}
