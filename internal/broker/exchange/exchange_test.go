package exchange_test

import (
	"net/url"
	"strings"
	"testing"

	"github.com/signet-id/signet/internal/broker/exchange"
	"github.com/signet-id/signet/internal/tokenapi"
)

func parse(t testing.TB, form url.Values) (exchange.Request, error) {
	form.Set("grant_type", tokenapi.GrantTokenExchange)
	req, err := tokenapi.ParseForm([]byte(form.Encode()))
	if err != nil {
		return exchange.Request{}, err
	}
	return exchange.ParseRequest(req)
}

func TestParseRequest(t *testing.T) {
	r, err := parse(t, url.Values{"resource": {"orders-db"}, "request_context": {`{"ticket":"CHG-1","n":2}`}, "ttl": {"5m"}})
	if err != nil || r.Credential != "orders-db" || r.Context["ticket"] != "CHG-1" || r.TTL.String() != "5m0s" {
		t.Fatalf("ParseRequest = %+v, %v", r, err)
	}
	if r, err := parse(t, url.Values{"audience": {"stripe"}}); err != nil || r.Credential != "stripe" || r.Context != nil || r.TTL != 0 {
		t.Fatalf("ParseRequest(audience) = %+v, %v", r, err)
	}
	cases := map[string]struct {
		form url.Values
		want string
	}{
		"none":          {url.Values{}, "parameter resource is required"},
		"two":           {url.Values{"resource": {"a", "b"}}, "exactly one credential"},
		"array context": {url.Values{"resource": {"a"}, "request_context": {`[1]`}}, "request_context"},
		"bad json":      {url.Values{"resource": {"a"}, "request_context": {`{`}}, "request_context"},
		"big context":   {url.Values{"resource": {"a"}, "request_context": {`{"x":"` + strings.Repeat("a", 20000) + `"}`}}, "request_context"},
		"ttl":           {url.Values{"resource": {"a"}, "ttl": {"-5m"}}, "parameter ttl"},
	}
	for name, c := range cases {
		_, err := parse(t, c.form)
		var oe *tokenapi.Error
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: ParseRequest = %v, want an error containing %q", name, err, c.want)
		} else if e, ok := err.(*tokenapi.Error); ok {
			oe = e
			if oe.Code != tokenapi.ErrInvalidRequest {
				t.Errorf("%s: code %s, want invalid_request", name, oe.Code)
			}
		}
	}
}

// FuzzParseRequest feeds arbitrary token request bodies: parsing fails
// cleanly or yields exactly one credential name.
func FuzzParseRequest(f *testing.F) {
	f.Add("grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange&resource=orders-db&request_context=%7B%22ticket%22%3A%22CHG-1%22%7D&ttl=5m")
	f.Add("grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange&audience=a&ttl=1d")
	f.Add("resource=x&request_context=%5B%5D")
	f.Fuzz(func(t *testing.T, body string) {
		req, err := tokenapi.ParseForm([]byte(body))
		if err != nil {
			return
		}
		r, err := exchange.ParseRequest(req)
		if err != nil {
			if _, ok := err.(*tokenapi.Error); !ok {
				t.Fatalf("ParseRequest error %T is not a *tokenapi.Error", err)
			}
			return
		}
		if r.Credential == "" || r.TTL < 0 {
			t.Fatalf("ParseRequest = %+v", r)
		}
	})
}
