package helper

import (
	"strings"
	"testing"
)

func TestParseConfig(t *testing.T) {
	good := `agent_socket: /run/signet/agent.sock
x509: {dir: /etc/app/tls, cert: svid.pem, key: svid.key, bundle: bundle.pem, pkcs12: app.p12, pkcs12_password_file: /etc/app/p12pass}
jwt: [{audience: partner, file: /etc/app/partner.jwt}]
on_change: {command: ["systemctl", "reload", "app"], timeout: 10s}
`
	c, err := ParseConfig([]byte(good))
	if err != nil {
		t.Fatalf("ParseConfig(good) = %v", err)
	}
	if c.X509.PKCS12 != "app.p12" || c.JWT[0].Audience != "partner" || c.OnChange.timeout().String() != "10s" {
		t.Errorf("ParseConfig(good) = %+v", c)
	}
	if _, err := ParseConfig([]byte("x509: {dir: d, cert: both.pem, key: both.pem}\non_change: {signal: SIGHUP, pid_file: /run/app.pid}\n")); err != nil {
		t.Errorf("combined cert+key file and a signal: %v", err)
	}

	for name, tc := range map[string]struct{ in, want string }{
		"unknown top-level key": {"x509: {dir: d, cert: c, key: k}\ncredentials: []\n", `line 2`},
		"credentials later":     {"x509: {dir: d, cert: c, key: k}\ncredentials: []\n", `credentials`},
		"unknown x509 key":      {"x509: {dir: d, cert: c, key: k, svid: x}\n", `svid`},
		"nothing to write":      {"agent_socket: /s\n", `x509: nothing to write`},
		"missing cert":          {"x509: {dir: d, key: k}\n", `x509.cert: required`},
		"path in a file name":   {"x509: {dir: d, cert: ../c, key: k}\n", `x509.cert: "../c" must be a plain file name`},
		"hidden generation":     {"x509: {dir: d, cert: ..signet-data, key: k}\n", `x509.cert`},
		"name used twice":       {"x509: {dir: d, cert: c, key: k, bundle: c}\n", `x509.bundle: "c" is already used by x509.cert`},
		"pkcs12 no password":    {"x509: {dir: d, cert: c, key: k, pkcs12: p}\n", `x509.pkcs12_password_file: required`},
		"jwt no audience":       {"jwt: [{file: /f}]\n", `jwt[0].audience: required`},
		"jwt file twice":        {"jwt: [{audience: a, file: /f}, {audience: b, file: /f}]\n", `jwt[1].file`},
		"command and signal":    {"jwt: [{audience: a, file: /f}]\non_change: {command: [x], signal: SIGHUP}\n", `on_change: set command or signal, not both`},
		"unknown signal":        {"jwt: [{audience: a, file: /f}]\non_change: {signal: SIGKILL, pid_file: /p}\n", `on_change.signal: "SIGKILL" is not one of`},
		"signal without pid":    {"jwt: [{audience: a, file: /f}]\non_change: {signal: SIGHUP}\n", `on_change.pid_file: required`},
		"bad timeout":           {"jwt: [{audience: a, file: /f}]\non_change: {command: [x], timeout: soon}\n", `"soon" is not a duration`},
		"not a mapping":         {"- a\n", `must be a mapping`},
		"two documents":         {"jwt: [{audience: a, file: /f}]\n---\njwt: []\n", `more than one YAML document`},
		"empty":                 {"", `empty configuration`},
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
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseConfig(data)
		if err == nil {
			if verr := c.Validate(); verr != nil {
				t.Fatalf("ParseConfig accepted a config that does not validate: %v", verr)
			}
		}
	})
}
