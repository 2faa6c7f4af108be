package helper

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParseConfig(t *testing.T) {
	good := `agent_socket: /run/signet/agent.sock
x509: {dir: /etc/app/tls, cert: svid.pem, key: svid.key, bundle: bundle.pem, pkcs12: app.p12, pkcs12_password_file: /etc/app/p12pass}
jwt: [{audience: partner, file: /etc/app/partner.jwt}]
broker_url: https://signet.example.com:8443
credentials:
  - name: orders-db
    context: {purpose: nightly-report, ticket: 42}
    ttl: 15m
    template: /etc/app/db.properties.tmpl
    file: /etc/app/db.properties
on_change: {command: ["systemctl", "reload", "app"], timeout: 10s}
`
	c, err := ParseConfig([]byte(good))
	if err != nil {
		t.Fatalf("ParseConfig(good) = %v", err)
	}
	if c.X509.PKCS12 != "app.p12" || c.JWT[0].Audience != "partner" || c.OnChange.timeout().String() != "10s" {
		t.Errorf("ParseConfig(good) = %+v", c)
	}
	want := Credential{Name: "orders-db", Context: map[string]string{"purpose": "nightly-report", "ticket": "42"}, TTL: durationOf(15 * time.Minute),
		Template: "/etc/app/db.properties.tmpl", File: "/etc/app/db.properties"}
	if c.BrokerURL != "https://signet.example.com:8443" || len(c.Credentials) != 1 || !reflect.DeepEqual(c.Credentials[0], want) {
		t.Errorf("ParseConfig(good) broker_url %q, credentials %+v; want %+v", c.BrokerURL, c.Credentials, want)
	}
	if _, err := ParseConfig([]byte("credentials: [{name: a, template: /t, file: /f}]\n")); err != nil {
		t.Errorf("credentials alone: %v", err)
	}
	if _, err := ParseConfig([]byte("x509: {dir: d, cert: both.pem, key: both.pem}\non_change: {signal: SIGHUP, pid_file: /run/app.pid}\n")); err != nil {
		t.Errorf("combined cert+key file and a signal: %v", err)
	}

	for name, tc := range map[string]struct{ in, want string }{
		"unknown top-level key":    {"x509: {dir: d, cert: c, key: k}\ncredential: []\n", `line 2`},
		"unknown key named":        {"x509: {dir: d, cert: c, key: k}\ncredential: []\n", `credential`},
		"unknown credentials key":  {"credentials: [{name: a, template: /t, file: /f, tmpl: x}]\n", `tmpl`},
		"credential no name":       {"credentials: [{template: /t, file: /f}]\n", `credentials[0].name: required`},
		"credential name space":    {"credentials: [{name: orders db, template: /t, file: /f}]\n", `credentials[0].name: "orders db"`},
		"credential no template":   {"credentials: [{name: a, file: /f}]\n", `credentials[0].template: required`},
		"credential no file":       {"credentials: [{name: a, template: /t}]\n", `credentials[0].file: required`},
		"credential file twice":    {"jwt: [{audience: a, file: /f}]\ncredentials: [{name: a, template: /t, file: /f}]\n", `credentials[0].file: "/f" is used by an earlier`},
		"credential file again":    {"credentials: [{name: a, template: /t, file: /f}, {name: b, template: /t, file: /f}]\n", `credentials[1].file`},
		"credential over template": {"credentials: [{name: a, template: /t, file: /t}]\n", `credentials[0].file: "/t" is the template itself`},
		"credential in x509.dir":   {"x509: {dir: /d, cert: c, key: k}\ncredentials: [{name: a, template: /t, file: /d/k}]\n", `credentials[0].file: "/d/k" is one of the x509 files`},
		"credential bad ttl":       {"credentials: [{name: a, template: /t, file: /f, ttl: soon}]\n", `"soon" is not a duration`},
		"credential context list":  {"credentials: [{name: a, template: /t, file: /f, context: [x]}]\n", `context`},
		"bad broker_url":           {"broker_url: http://signet:8443\ncredentials: [{name: a, template: /t, file: /f}]\n", `broker_url "http://signet:8443": want https://HOST:PORT`},
		"all problems at once":     {"credentials: [{name: a}]\nbroker_url: x\n", `credentials[0].file: required`},
		"unknown x509 key":         {"x509: {dir: d, cert: c, key: k, svid: x}\n", `svid`},
		"nothing to write":         {"agent_socket: /s\n", `x509: nothing to write`},
		"missing cert":             {"x509: {dir: d, key: k}\n", `x509.cert: required`},
		"path in a file name":      {"x509: {dir: d, cert: ../c, key: k}\n", `x509.cert: "../c" must be a plain file name`},
		"hidden generation":        {"x509: {dir: d, cert: ..signet-data, key: k}\n", `x509.cert`},
		"name used twice":          {"x509: {dir: d, cert: c, key: k, bundle: c}\n", `x509.bundle: "c" is already used by x509.cert`},
		"pkcs12 no password":       {"x509: {dir: d, cert: c, key: k, pkcs12: p}\n", `x509.pkcs12_password_file: required`},
		"jwt no audience":          {"jwt: [{file: /f}]\n", `jwt[0].audience: required`},
		"jwt file twice":           {"jwt: [{audience: a, file: /f}, {audience: b, file: /f}]\n", `jwt[1].file`},
		"command and signal":       {"jwt: [{audience: a, file: /f}]\non_change: {command: [x], signal: SIGHUP}\n", `on_change: set command or signal, not both`},
		"unknown signal":           {"jwt: [{audience: a, file: /f}]\non_change: {signal: SIGKILL, pid_file: /p}\n", `on_change.signal: "SIGKILL" is not one of`},
		"signal without pid":       {"jwt: [{audience: a, file: /f}]\non_change: {signal: SIGHUP}\n", `on_change.pid_file: required`},
		"bad timeout":              {"jwt: [{audience: a, file: /f}]\non_change: {command: [x], timeout: soon}\n", `"soon" is not a duration`},
		"not a mapping":            {"- a\n", `must be a mapping`},
		"two documents":            {"jwt: [{audience: a, file: /f}]\n---\njwt: []\n", `more than one YAML document`},
		"empty":                    {"", `empty configuration`},
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
	f.Add([]byte("x509: {dir: d, cert: c, key: k}\n"))
	f.Add([]byte("jwt: [{audience: a, file: /f}]\non_change: {signal: SIGHUP, pid_file: /p, timeout: 1d}\n"))
	f.Add([]byte("x509: {dir: d, cert: c, key: c, pkcs12: p, pkcs12_password_file: pw}\non_change: {command: [a, b]}\n"))
	f.Add([]byte("{x509: [1, 2], jwt: {a: b}}"))
	f.Add([]byte("broker_url: https://b:1\ncredentials: [{name: a, context: {k: v}, ttl: 5m, template: /t, file: /f}]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseConfig(data)
		if err == nil {
			if verr := c.Validate(); verr != nil {
				t.Fatalf("ParseConfig accepted a config that does not validate: %v", verr)
			}
		}
	})
}
