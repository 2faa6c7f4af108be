package credential

import (
	"bytes"
	"net/url"
	"strings"
)

// GitCredential is one line of a git credential store file holding a
// password (or token).
type GitCredential struct {
	Scheme, Host, User string
	Password           string // percent-decoded
	// Start and End are the byte span of the password as written.
	Start, End int
}

// ParseGitCredentials parses a git-credential-store file
// (~/.git-credentials): one URL per line, scheme://user:password@host/path,
// with percent-encoded user and password. Lines that are not such URLs, or
// have no password, are skipped.
func ParseGitCredentials(content []byte) []GitCredential {
	var out []GitCredential
	for off, line := range lines(content) {
		if c, ok := parseGitCredentialLine(string(bytes.TrimRight(line, "\r"))); ok {
			c.Start += off
			c.End += off
			out = append(out, c)
		}
	}
	return out
}

func parseGitCredentialLine(line string) (GitCredential, bool) {
	u, err := url.Parse(strings.TrimSpace(line))
	if err != nil || u.User == nil || u.Host == "" {
		return GitCredential{}, false
	}
	pw, ok := u.User.Password()
	if !ok || pw == "" {
		return GitCredential{}, false
	}
	// Locate the raw password: between the first ':' of the userinfo and
	// the '@' ending it.
	sep := strings.Index(line, "://")
	if sep < 0 {
		return GitCredential{}, false
	}
	authStart := sep + 3
	at := strings.LastIndex(line[authStart:], "@"+u.Host)
	if at < 0 {
		return GitCredential{}, false
	}
	userinfo := line[authStart : authStart+at]
	colon := strings.IndexByte(userinfo, ':')
	if colon < 0 {
		return GitCredential{}, false
	}
	return GitCredential{
		Scheme: u.Scheme, Host: u.Host, User: u.User.Username(), Password: pw,
		Start: authStart + colon + 1, End: authStart + at,
	}, true
}

// DetectGitCredentials reports the passwords of a git credential store file.
func DetectGitCredentials(content []byte) []Hit {
	var hits []Hit
	for _, c := range ParseGitCredentials(content) {
		hits = append(hits, passwordHit("git-credentials", "Password or token in git credential store",
			c.Start, c.End, c.Password, map[string]string{"host": c.Host, "user": c.User}))
	}
	return hits
}
