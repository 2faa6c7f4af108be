package sshpop

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/crypto/ssh"
)

// maxAuthoritiesSize bounds the cert_authorities_path file.
const maxAuthoritiesSize = 1 << 20

// Authorities are the host CAs a server trusts, and the keys it refuses,
// as read from an authorized_keys-style file by ParseAuthorities. The zero
// value trusts nothing.
type Authorities struct {
	cas     []authority
	revoked map[string]bool // SSH wire format of revoked keys
}

// authority is one CA line: its key and, when the line names any, the
// host patterns its certificates' principals must match.
type authority struct {
	key      []byte // SSH wire format
	patterns []string
}

// Len returns the number of CA lines.
func (a *Authorities) Len() int { return len(a.cas) }

// ReadAuthorities reads the file at path (see ParseAuthorities).
func ReadAuthorities(path string) (*Authorities, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read ssh host ca keys: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxAuthoritiesSize+1))
	if err != nil {
		return nil, fmt.Errorf("read ssh host ca keys %s: %w", path, err)
	}
	if len(data) > maxAuthoritiesSize {
		return nil, fmt.Errorf("read ssh host ca keys %s: larger than %d bytes", path, maxAuthoritiesSize)
	}
	a, err := ParseAuthorities(data)
	if err != nil {
		return nil, fmt.Errorf("ssh host ca keys %s: %w", path, err)
	}
	return a, nil
}

// ParseAuthorities reads host CA public keys, one a line, in the forms
// OpenSSH uses for them:
//
//	@cert-authority *.example.org,!bastion.example.org ssh-ed25519 AAAA… comment   (known_hosts)
//	cert-authority ssh-ed25519 AAAA… comment                                      (authorized_keys)
//	ssh-ed25519 AAAA… comment                                                     (a bare key)
//	@revoked * ssh-ed25519 AAAA…                                                  (a key refused as CA or host key)
//
// Host patterns ('*' and '?' wildcards, '!' negations) restrict the
// principals a CA may certify; a line without patterns, or with "*",
// trusts the CA for any. Blank lines and '#' comments are skipped. Every
// malformed line is reported, by number; a file with no CA is an error.
func ParseAuthorities(data []byte) (*Authorities, error) {
	a := &Authorities{revoked: map[string]bool{}}
	var errs []error
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), maxAuthoritiesSize)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if err := a.parseLine(line); err != nil {
			errs = append(errs, fmt.Errorf("line %d: %w", n, err))
		}
	}
	if err := sc.Err(); err != nil {
		errs = append(errs, err)
	}
	if len(errs) == 0 && len(a.cas) == 0 {
		errs = append(errs, errors.New("no host CA key: want lines such as `@cert-authority * ssh-ed25519 AAAA…` or a bare public key"))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return a, nil
}

func (a *Authorities) parseLine(line string) error {
	if strings.HasPrefix(line, "@") {
		marker, hosts, key, _, _, err := ssh.ParseKnownHosts([]byte(line))
		if err != nil {
			return fmt.Errorf("not a known_hosts line: %v", err)
		}
		if err := notCert(key); err != nil {
			return err
		}
		switch marker {
		case "cert-authority":
			a.cas = append(a.cas, authority{key: key.Marshal(), patterns: anyHost(hosts)})
		case "revoked":
			a.revoked[string(key.Marshal())] = true
		default:
			return fmt.Errorf("unknown marker @%s: use @cert-authority or @revoked", marker)
		}
		return nil
	}
	errKnownHost := errors.New("a known_hosts host key, not a CA: mark CA lines @cert-authority")
	_, _, _, _, _, kerr := ssh.ParseKnownHosts([]byte(line))
	key, _, opts, _, err := ssh.ParseAuthorizedKey([]byte(line))
	if err != nil {
		if kerr == nil {
			return errKnownHost
		}
		return fmt.Errorf("not a public key line: %v", err)
	}
	for _, o := range opts {
		if o != "cert-authority" {
			if kerr == nil && !strings.Contains(o, "=") {
				return errKnownHost
			}
			return fmt.Errorf("option %q is not supported: sshpop reads only cert-authority (host patterns go after @cert-authority)", o)
		}
	}
	if err := notCert(key); err != nil {
		return err
	}
	a.cas = append(a.cas, authority{key: key.Marshal()})
	return nil
}

func notCert(key ssh.PublicKey) error {
	if _, ok := key.(*ssh.Certificate); ok {
		return errors.New("a certificate, not a CA's public key")
	}
	return nil
}

// anyHost drops a lone "*", which restricts nothing.
func anyHost(hosts []string) []string {
	if len(hosts) == 1 && hosts[0] == "*" {
		return nil
	}
	return hosts
}

// revokedKey reports whether key is marked @revoked.
func (a *Authorities) revokedKey(key ssh.PublicKey) bool { return a.revoked[string(key.Marshal())] }

// trusts reports whether key signs host certificates for principal: some
// CA line has key and allows principal.
func (a *Authorities) trusts(key ssh.PublicKey, principal string) bool {
	k := key.Marshal()
	for _, ca := range a.cas {
		if bytes.Equal(ca.key, k) && (ca.patterns == nil || matchList(principal, ca.patterns)) {
			return true
		}
	}
	return false
}

// isCA reports whether key is on some CA line.
func (a *Authorities) isCA(key ssh.PublicKey) bool {
	k := key.Marshal()
	for _, ca := range a.cas {
		if bytes.Equal(ca.key, k) {
			return true
		}
	}
	return false
}

// matchList is OpenSSH's host pattern-list match: some pattern matches and
// no negated one does. Host names compare case-insensitively.
func matchList(host string, patterns []string) bool {
	host = strings.ToLower(host)
	ok := false
	for _, p := range patterns {
		neg := strings.HasPrefix(p, "!")
		p = strings.ToLower(strings.TrimPrefix(p, "!"))
		if wildcard(p, host) {
			if neg {
				return false
			}
			ok = true
		}
	}
	return ok
}

// wildcard matches s against p, where '*' is any run of characters and '?'
// any one.
func wildcard(p, s string) bool {
	// Iterative matcher with one backtrack point: linear in practice.
	pi, si, star, mark := 0, 0, -1, 0
	for si < len(s) {
		switch {
		case pi < len(p) && (p[pi] == '?' || p[pi] == s[si]):
			pi++
			si++
		case pi < len(p) && p[pi] == '*':
			star, mark = pi, si
			pi++
		case star >= 0:
			pi, mark = star+1, mark+1
			si = mark
		default:
			return false
		}
	}
	for pi < len(p) && p[pi] == '*' {
		pi++
	}
	return pi == len(p)
}
