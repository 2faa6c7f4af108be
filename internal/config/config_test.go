package config

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"gopkg.in/yaml.v3"
)

func TestDecodeServer(t *testing.T) {
	in := `
trust_domain: example.org
data_dir: /var/lib/signet/server
store:
  driver: postgres
  dsn: postgres://signet@db/signet
ca:
  ttl: 48h
default_x509_ttl: 30m
admin_uids: [1000, 1001]
`
	var c Server
	if err := Decode([]byte(in), &c); err != nil {
		t.Fatalf("Decode: %v", err)
	}
	if c.TrustDomain != "example.org" || c.Store.Driver != "postgres" || time.Duration(c.CA.TTL) != 48*time.Hour ||
		time.Duration(c.DefaultX509TTL) != 30*time.Minute || len(c.AdminUIDs) != 2 {
		t.Errorf("Decode = %+v", c)
	}
}

// TestDecodePluginSections: plugin sections stay raw YAML for their
// registry; DecodeNode then decodes one strictly, naming the path.
func TestDecodePluginSections(t *testing.T) {
	in := `
trust_domain: example.org
upstream_authority:
  disk:
    cert_file: /etc/signet/upstream.crt
    key_file: /etc/signet/upstream.key
key_manager: {disk: {}}
`
	var c Server
	if err := Decode([]byte(in), &c); err != nil {
		t.Fatalf("Decode: %v", err)
	}
	if got := c.UpstreamAuthority.Names(); len(got) != 1 || got[0] != "disk" || len(c.KeyManager) != 1 {
		t.Fatalf("Decode = upstream %v, key manager %v", got, c.KeyManager.Names())
	}
	var disk struct {
		CertFile string `yaml:"cert_file"`
		KeyFile  string `yaml:"key_file"`
	}
	n := c.UpstreamAuthority["disk"]
	if err := DecodeNode("upstream_authority.disk", &n, &disk); err != nil || disk.CertFile != "/etc/signet/upstream.crt" {
		t.Errorf("DecodeNode = %+v, %v", disk, err)
	}
	var strict struct {
		CertFile string `yaml:"cert_file"`
	}
	err := DecodeNode("upstream_authority.disk", &n, &strict)
	if err == nil || !strings.Contains(err.Error(), "line 6: upstream_authority.disk.key_file is not a known key: use one of cert_file") {
		t.Errorf("DecodeNode(unknown key) = %v, want the line, the path and the known keys", err)
	}
}

func TestDecodeErrors(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"unknown key", "trust_domian: x\n", `line 1: trust_domian is not a known key: did you mean trust_domain?`},
		{"nested unknown key", "store:\n  drivr: sqlite\n", `line 2: store.drivr is not a known key: did you mean store.driver?`},
		{"a flag's spelling", "bind-address: 127.0.0.1:1\n", `line 1: bind-address is not a known key: did you mean bind_address?`},
		{"a nested flag's name", "trust_domain: x\nca_ttl: 1h\n", `line 2: ca_ttl is not a known key: did you mean ca.ttl (the key of --ca-ttl)?`},
		{"every unknown key at once", "bind_adress: x\nstore:\n  dsnfile: y\n",
			"line 1: bind_adress is not a known key: did you mean bind_address?\nline 3: store.dsnfile is not a known key: did you mean store.dsn_file?"},
		{"nothing close, few keys", "store:\n  password: x\n", `line 2: store.password is not a known key: use one of driver, dsn, dsn_file`},
		{"nothing close, many keys", "colour: blue\n", `line 1: colour is not a known key: this section has `},
		{"not a mapping", "- a\n", `line 1: the configuration: want a mapping of keys`},
		{"a section not a mapping", "store: [1]\n", `line 1: store: want a mapping of keys`},
		{"bad duration", "default_x509_ttl: soon\n", `"soon" is not a duration`},
		{"negative duration", "agent_ttl: -1h\n", `is not a duration`},
		{"wrong type", "admin_uids: root\n", `line 1`},
		{"two documents", "data_dir: a\n---\ndata_dir: b\n", "more than one YAML document"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c Server
			err := Decode([]byte(tt.in), &c)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Decode(%q) = %v, want error containing %q", tt.in, err, tt.want)
			}
			if strings.Contains(err.Error(), "config.") {
				t.Errorf("error leaks Go type names: %v", err)
			}
		})
	}
}

func TestLoadAgent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agent.yaml")
	if err := os.WriteFile(path, []byte("server_address: server:8081\nsync_interval: 2s\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := LoadAgent(path)
	if err != nil {
		t.Fatalf("LoadAgent: %v", err)
	}
	if c.ServerAddress != "server:8081" || time.Duration(c.SyncInterval) != 2*time.Second {
		t.Errorf("LoadAgent = %+v", c)
	}
	if _, err := LoadAgent(filepath.Join(t.TempDir(), "missing.yaml")); err == nil || !strings.Contains(err.Error(), "missing.yaml") {
		t.Errorf("LoadAgent(missing) = %v, want error naming the file", err)
	}
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte("trust_domain: example.org\nca:\n  ttl: 24h\n"))
	f.Add([]byte("admin_uids: [1, 2]\nstore: {driver: sqlite}\n"))
	f.Add([]byte("---\n---\n"))
	f.Add([]byte("default_jwt_ttl: !!binary AAAA\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		var s Server
		_ = Decode(data, &s)
		var a Agent
		_ = Decode(data, &a)
	})
}

// TestDecodeHTTPAndOIDCIssuers: the HTTPS listener's keys and the
// oidc_issuers section decode, strictly.
func TestDecodeHTTPAndOIDCIssuers(t *testing.T) {
	in := `
http_address: 0.0.0.0:8443
http_tls: {cert_file: /etc/signet/web.pem, key_file: /etc/signet/web.key}
oidc_issuers:
  github:
    issuer: https://token.actions.githubusercontent.com
  corp:
    issuer: https://ci.corp.example
    kind: generic
    audience: https://signet.corp.example
    ca_bundle_path: /etc/signet/corp-ca.pem
    jwks_url: https://ci.corp.example/keys
    claims: [team]
`
	var c Server
	if err := Decode([]byte(in), &c); err != nil {
		t.Fatalf("Decode: %v", err)
	}
	corp := c.OIDCIssuers["corp"]
	if c.HTTPAddress != "0.0.0.0:8443" || c.HTTPTLS.KeyFile != "/etc/signet/web.key" || len(c.OIDCIssuers) != 2 ||
		corp.Kind != "generic" || corp.JWKSURL == "" || len(corp.Claims) != 1 || c.OIDCIssuers["github"].Issuer == "" {
		t.Errorf("Decode = %+v", c)
	}
	err := Decode([]byte("oidc_issuers:\n  github:\n    issuer: https://x\n    jwks_uri: https://x/keys\n"), &Server{})
	if err == nil || !strings.Contains(err.Error(), "jwks_uri") || !strings.Contains(err.Error(), "line 4") {
		t.Errorf("unknown key in an issuer: %v, want an error naming jwks_uri and its line", err)
	}
}

// TestDecodeNodeWrongKinds: a value of the wrong shape names its field
// path and what the field takes, and so does a value its type's own
// UnmarshalYAML refuses.
func TestDecodeNodeWrongKinds(t *testing.T) {
	type item struct {
		Name string            `yaml:"name"`
		Tags map[string]string `yaml:"tags"`
		TTL  Duration          `yaml:"ttl"`
	}
	type doc struct {
		Items []item `yaml:"items"`
		Any   any    `yaml:"any"`
	}
	for _, tc := range []struct{ in, want string }{
		{"items: {name: a}\n", "line 1: items: want a list"},
		{"items: [{name: [a]}]\n", "line 1: items[0].name: want a single value, not a list or mapping"},
		{"items: [{tags: [a]}]\n", "line 1: items[0].tags: want a mapping of keys"},
		{"items: [{tags: {a: {b: c}}}]\n", "line 1: items[0].tags.a: want a single value"},
		{"items:\n  - ttl: soon\n", `line 2: items[0].ttl: "soon" is not a duration`},
		{"items:\n  - ttl: [1s]\n", `line 2: items[0].ttl: want a duration`},
	} {
		var n yaml.Node
		if err := yaml.Unmarshal([]byte(tc.in), &n); err != nil {
			t.Fatal(err)
		}
		var d doc
		err := DecodeNode("", n.Content[0], &d)
		if err == nil || !strings.Contains(topLevel(err).Error(), tc.want) {
			t.Errorf("DecodeNode(%q) = %v, want an error containing %q", tc.in, err, tc.want)
		}
	}
	var n yaml.Node
	if err := yaml.Unmarshal([]byte("items: [{name: a, tags: {k: v}, ttl: 1m}, {name: 7, tags: }]\nany: [1, {a: b}]\n"), &n); err != nil {
		t.Fatal(err)
	}
	var d doc
	if err := DecodeNode("", n.Content[0], &d); err != nil || d.Items[1].Name != "7" || time.Duration(d.Items[0].TTL) != time.Minute {
		t.Errorf("DecodeNode(good) = %+v, %v", d, err)
	}
}

// TestDecodeNodeTextValues: struct types that decode from a scalar through
// UnmarshalText (a SPIFFE ID, a CIDR) are not mistaken for mappings.
func TestDecodeNodeTextValues(t *testing.T) {
	var c struct {
		ID     spiffeid.ID  `yaml:"id"`
		Prefix netip.Prefix `yaml:"prefix"`
	}
	var n yaml.Node
	if err := yaml.Unmarshal([]byte("id: spiffe://example.org/web\nprefix: 10.0.0.0/8\n"), &n); err != nil {
		t.Fatal(err)
	}
	if err := DecodeNode("x", n.Content[0], &c); err != nil {
		t.Fatalf("DecodeNode = %v", err)
	}
	if c.ID.String() != "spiffe://example.org/web" || c.Prefix.String() != "10.0.0.0/8" {
		t.Errorf("decoded %v %v", c.ID, c.Prefix)
	}
}
