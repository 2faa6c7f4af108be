package tokenapi

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

const exchange = "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange"

func TestParseForm(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		code, desc string // want error code and a fragment of its description; "" = ok
	}{
		{"minimal", exchange, "", ""},
		{"full", exchange + "&subject_token=a.b.c&subject_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Aid_token&requested_token_type=x&audience=a&audience=b&resource=https%3A%2F%2Fr&csr=AAAA", "", ""},
		{"no grant type", "subject_token=x", ErrInvalidRequest, "grant_type is required"},
		{"other grant", "grant_type=client_credentials", ErrUnsupportedGrantType, `grant_type "client_credentials"`},
		{"duplicate grant", exchange + "&" + exchange, ErrInvalidRequest, `"grant_type" is sent 2 times`},
		{"duplicate subject token", exchange + "&subject_token=a&subject_token=b&subject_token_type=t", ErrInvalidRequest, `"subject_token" is sent 2 times`},
		{"duplicate extension", exchange + "&csr=a&csr=b", ErrInvalidRequest, "csr"},
		{"token without type", exchange + "&subject_token=a", ErrInvalidRequest, "subject_token_type is required"},
		{"type without token", exchange + "&subject_token_type=a", ErrInvalidRequest, "subject_token is required"},
		{"actor half", exchange + "&actor_token=a", ErrInvalidRequest, "actor_token and actor_token_type"},
		{"empty audience", exchange + "&audience=", ErrInvalidRequest, "audience is empty"},
		{"too many audiences", exchange + strings.Repeat("&audience=a", 17), ErrInvalidRequest, "audience is repeated 17 times"},
		{"bad escape", exchange + "&a=%zz", ErrInvalidRequest, "not a valid form"},
		{"bad utf-8", exchange + "&a=\xff", ErrInvalidRequest, "UTF-8"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseForm([]byte(tc.body))
			if tc.code == "" {
				if err != nil {
					t.Fatalf("ParseForm(%q) = %v, want ok", tc.body, err)
				}
				return
			}
			oe, ok := err.(*Error)
			if !ok || oe.Code != tc.code || !strings.Contains(oe.Description, tc.desc) {
				t.Fatalf("ParseForm(%q) = %v, want %s naming %q", tc.body, err, tc.code, tc.desc)
			}
		})
	}
}

func TestParseRequestTransport(t *testing.T) {
	big := exchange + "&x=" + strings.Repeat("a", MaxBodySize)
	for _, tc := range []struct {
		name, method, target, ctype, body string
		status                            int
		desc                              string
	}{
		{"ok", "POST", Path, "application/x-www-form-urlencoded", exchange, 0, ""},
		{"charset param", "POST", Path, "application/x-www-form-urlencoded; charset=utf-8", exchange, 0, ""},
		{"get", "GET", Path, "", "", 405, "POST"},
		{"json", "POST", Path, "application/json", `{"grant_type":"x"}`, 415, "Content-Type"},
		{"no content type", "POST", Path, "", exchange, 415, "Content-Type"},
		{"query", "POST", Path + "?subject_token=x", "application/x-www-form-urlencoded", exchange, 400, "URL query"},
		{"too large", "POST", Path, "application/x-www-form-urlencoded", big, 413, "65536"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(tc.method, tc.target, strings.NewReader(tc.body))
			if tc.ctype != "" {
				r.Header.Set("Content-Type", tc.ctype)
			}
			_, err := ParseRequest(r)
			if tc.status == 0 {
				if err != nil {
					t.Fatalf("ParseRequest = %v, want ok", err)
				}
				return
			}
			oe, ok := err.(*Error)
			if !ok || oe.status() != tc.status || oe.Code != ErrInvalidRequest || !strings.Contains(oe.Description, tc.desc) {
				t.Fatalf("ParseRequest = %v (status %d), want invalid_request %d naming %q", err, statusOf(err), tc.status, tc.desc)
			}
		})
	}
}

func statusOf(err error) int {
	if oe, ok := err.(*Error); ok {
		return oe.status()
	}
	return 0
}

// FuzzParseForm: any body parses or is refused with an OAuth error naming
// the problem; never a panic, and an accepted request has its single
// parameters once.
func FuzzParseForm(f *testing.F) {
	for _, s := range []string{exchange, exchange + "&subject_token=a&subject_token_type=b&audience=x&audience=y&csr=AA", "grant_type=x", "a=%zz", exchange + "&" + exchange, ""} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := ParseForm(body)
		if err != nil {
			oe, ok := err.(*Error)
			if !ok || oe.Code == "" || oe.Description == "" {
				t.Fatalf("ParseForm(%q) = %v, want an *Error with code and description", body, err)
			}
			return
		}
		if req.GrantType != GrantTokenExchange {
			t.Fatalf("accepted grant_type %q", req.GrantType)
		}
		for name, vs := range req.Params {
			if len(vs) > 1 && !repeatable[name] {
				t.Fatalf("accepted %s %d times", name, len(vs))
			}
		}
		if (req.SubjectToken == "") != (req.SubjectTokenType == "") {
			t.Fatalf("accepted subject_token without its type")
		}
	})
}

var _ = http.MethodPost
