package gateway

import (
	"strings"
	"testing"
)

func TestParseConfig(t *testing.T) {
	good := `agent_socket: /run/signet/agent.sock
ingress:
  - listen: 0.0.0.0:8443
    forward: 127.0.0.1:8080
    protocol: http
    allow: ['subject.id == "spiffe://example.org/web"', 'subject.id.startsWith("spiffe://example.org/batch/")']
egress:
  - listen: 127.0.0.1:19000
    protocol: tcp
    upstream: orders.internal:8443
    spiffe_id: spiffe://example.org/orders
  - listen: 127.0.0.1:15432
    protocol: postgres
    upstream: db.internal:5432
    credential: orders-db
    context: {ticket: CHG-1}
    ttl: 20m
    database: orders
    upstream_tls: {mode: require}
  - listen: 127.0.0.1:18080
    protocol: http
    upstream: https://api.partner.example
    credential: partner-api
    inject: {header: Authorization, format: "Bearer {{.access_token}}"}
  - listen: 127.0.0.1:15433
    protocol: postgres
    upstream: db.internal:5432
    credential: orders-db
broker_url: https://signet.example.com:8443
`
	c, err := ParseConfig([]byte(good))
	if err != nil {
		t.Fatalf("ParseConfig(good) = %v", err)
	}
	if len(c.Ingress[0].rules) != 2 || c.Egress[0].id.String() != "spiffe://example.org/orders" {
		t.Errorf("ParseConfig(good) = %+v", c)
	}
	if pg := c.Egress[1].pg; pg == nil || pg.Host != "db.internal" || pg.Port != 5432 || pg.TLSConfig == nil || !pg.TLSConfig.InsecureSkipVerify {
		t.Errorf("egress[1] (require) upstream settings = %+v", pg)
	}
	if r := c.Egress[2]; r.target == nil || r.target.Host != "api.partner.example" || r.format == nil {
		t.Errorf("egress[2] (http) = %+v", r)
	}
	if pg := c.Egress[3].pg; pg == nil || pg.TLSConfig == nil || pg.TLSConfig.InsecureSkipVerify || pg.TLSConfig.ServerName != "db.internal" {
		t.Errorf("egress[3] (default verify-full) upstream settings = %+v", pg)
	}
	const pgRoute = "egress: [{listen: '127.0.0.1:1', protocol: postgres, upstream: 'db:5432', credential: db%s}]\n"
	const ing = "ingress: [{listen: ':8443', forward: '127.0.0.1:80', protocol: http, allow: ['%s']}]\n"
	for name, tc := range map[string]struct{ in, want string }{
		"unknown key":         {"ingress: []\nroutes: []\n", "line 2: routes is not a known key"},
		"credential on tcp":   {"egress: [{listen: '127.0.0.1:1', protocol: tcp, upstream: 'a:1', spiffe_id: 'spiffe://x/y', credential: db}]\n", "egress[0] (127.0.0.1:1).credential: not used by protocol tcp"},
		"spiffe_id on pg":     {strings.Replace(pgRoute, "%s", ", spiffe_id: 'spiffe://x/y'", 1), "egress[0] (127.0.0.1:1).spiffe_id: not used by protocol postgres"},
		"pg no credential":    {"egress: [{listen: '127.0.0.1:1', protocol: postgres, upstream: 'db:5432'}]\n", "egress[0] (127.0.0.1:1).credential: required"},
		"pg bad upstream":     {strings.Replace(pgRoute, "'db:5432'", "'db'", 1), "egress[0] (127.0.0.1:1).upstream: \"db\": want the PostgreSQL server's host:port"},
		"pg bad tls mode":     {strings.Replace(pgRoute, "%s", ", upstream_tls: {mode: prefer}", 1), `upstream_tls.mode: "prefer": use disable, require or verify-full`},
		"pg missing ca file":  {strings.Replace(pgRoute, "%s", ", upstream_tls: {ca_file: /nonexistent/ca.pem}", 1), "egress[0] (127.0.0.1:1).upstream_tls.ca_file: "},
		"pg ca with disable":  {strings.Replace(pgRoute, "%s", ", upstream_tls: {mode: disable, ca_file: /x}", 1), "upstream_tls.ca_file: not used with mode disable"},
		"pg bad ttl":          {strings.Replace(pgRoute, "%s", ", ttl: soon", 1), `"soon" is not a duration`},
		"pg unknown tls key":  {strings.Replace(pgRoute, "%s", ", upstream_tls: {sslmode: require}", 1), "egress[0].upstream_tls.sslmode is not a known key"},
		"http no inject":      {"egress: [{listen: '127.0.0.1:1', protocol: http, upstream: 'https://a', credential: c}]\n", `egress[0] (127.0.0.1:1).inject: required`},
		"http plain upstream": {"egress: [{listen: '127.0.0.1:1', protocol: http, upstream: 'http://a', credential: c, inject: {header: X, format: y}}]\n", `upstream: "http://a": want the upstream's https:// URL`},
		"http bad header":     {"egress: [{listen: '127.0.0.1:1', protocol: http, upstream: 'https://a', credential: c, inject: {header: 'X Y', format: y}}]\n", `inject.header: "X Y": want a header name`},
		"http bad template":   {"egress: [{listen: '127.0.0.1:1', protocol: http, upstream: 'https://a', credential: c, inject: {header: X, format: '{{.x'}}]\n", `egress[0] (127.0.0.1:1).inject.format:`},
		"http tls mode":       {"egress: [{listen: '127.0.0.1:1', protocol: http, upstream: 'https://a', credential: c, inject: {header: X, format: y}, upstream_tls: {mode: disable}}]\n", `an http upstream is always verified`},
		"inject on pg":        {strings.Replace(pgRoute, "%s", ", inject: {header: X, format: y}", 1), "inject: not used by protocol postgres"},
		"bad egress protocol": {"egress: [{listen: '127.0.0.1:1', protocol: grpc, upstream: 'a:1'}]\n", `protocol: "grpc": use tcp, postgres or http`},
		"bad broker url":      {"broker_url: http://signet:8443\n" + strings.Replace(pgRoute, "%s", "", 1), `broker_url "http://signet:8443": want https://HOST:PORT`},
		"rule does not parse": {strings.Replace(ing, "%s", `subject.id ==`, 1), "ingress[0] (:8443).allow[0]: 1:"},
		"rule not bool":       {strings.Replace(ing, "%s", `subject.id`, 1), "ingress[0] (:8443).allow[0]"},
		"unknown variable":    {strings.Replace(ing, "%s", `request.credential == "x"`, 1), "ingress[0] (:8443).allow[0]"},
		"no rules":            {"ingress: [{listen: ':8443', forward: '127.0.0.1:80', protocol: tcp}]\n", "ingress[0] (:8443).allow: required"},
		"bad protocol":        {"ingress: [{listen: ':8443', forward: '127.0.0.1:80', protocol: grpc, allow: ['true']}]\n", `protocol: "grpc": use http or tcp`},
		"listen twice":        {"ingress: [{listen: ':1', forward: 'a:1', protocol: tcp, allow: ['true']}, {listen: ':1', forward: 'a:1', protocol: tcp, allow: ['true']}]\n", "ingress[1].listen: :1 is already used by ingress[0]"},
		"bad spiffe id":       {"egress: [{listen: '127.0.0.1:1', protocol: tcp, upstream: 'a:1', spiffe_id: 'orders'}]\n", "egress[0] (127.0.0.1:1).spiffe_id"},
		"egress off loopback": {"egress: [{listen: '0.0.0.0:1', protocol: tcp, upstream: 'a:1', spiffe_id: 'spiffe://x/y'}]\n", "egress[0] (0.0.0.0:1).listen: \"0.0.0.0:1\" is not a loopback address"},
		"no routes":           {"agent_socket: /s\n", "no routes"},
		"empty":               {"", "empty configuration"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := ParseConfig([]byte(tc.in))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("ParseConfig(%q) = %v, want an error containing %q", tc.in, err, tc.want)
			}
		})
	}
}

func FuzzParseConfig(f *testing.F) {
	f.Add([]byte("ingress: [{listen: ':8443', forward: '127.0.0.1:80', protocol: http, allow: ['subject.id == \"spiffe://example.org/web\"']}]\n"))
	f.Add([]byte("egress: [{listen: '127.0.0.1:1', protocol: tcp, upstream: 'a:1', spiffe_id: 'spiffe://example.org/x'}]\n"))
	f.Add([]byte("ingress: [{allow: ['subject.segments[9] == \"a\"']}]"))
	f.Add([]byte("broker_url: https://s:1\negress: [{listen: '127.0.0.1:1', protocol: postgres, upstream: 'db:5432', credential: c, ttl: 5m, context: {a: b}, upstream_tls: {mode: require}}]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseConfig(data)
		if err != nil {
			return
		}
		for _, r := range c.Ingress {
			if len(r.rules) != len(r.Allow) || len(r.rules) == 0 {
				t.Fatalf("accepted route %+v with %d compiled rules", r, len(r.rules))
			}
		}
	})
}
