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
`
	c, err := ParseConfig([]byte(good))
	if err != nil {
		t.Fatalf("ParseConfig(good) = %v", err)
	}
	if len(c.Ingress[0].rules) != 2 || c.Egress[0].id.String() != "spiffe://example.org/orders" {
		t.Errorf("ParseConfig(good) = %+v", c)
	}
	const ing = "ingress: [{listen: ':8443', forward: '127.0.0.1:80', protocol: http, allow: ['%s']}]\n"
	for name, tc := range map[string]struct{ in, want string }{
		"unknown key":         {"ingress: []\nroutes: []\n", "line 2: routes is not a known key"},
		"credential egress":   {"egress: [{listen: ':1', protocol: tcp, upstream: 'a:1', spiffe_id: 'spiffe://x/y', credential: db}]\n", "egress[0].credential is not a known key"},
		"postgres egress":     {"egress: [{listen: ':1', protocol: postgres, upstream: 'a:1', spiffe_id: 'spiffe://x/y'}]\n", `egress[0] (:1).protocol: "postgres": only tcp`},
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
