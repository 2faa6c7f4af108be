package credential

import (
	"bytes"
	"strings"
)

// PgpassEntry is one line of a PostgreSQL password file.
type PgpassEntry struct {
	Host, Port, Database, User string
	Password                   string // unescaped
	// Start and End are the byte span of the password as written.
	Start, End int
}

// ParsePgpass parses a .pgpass file: lines of
// hostname:port:database:username:password where '\' escapes ':' and '\'.
// As in libpq, everything after the fourth unescaped colon is the password.
// Comment lines (#) and lines with fewer than five fields are skipped.
func ParsePgpass(content []byte) []PgpassEntry {
	var out []PgpassEntry
	for off, line := range lines(content) {
		line = bytes.TrimRight(line, "\r")
		if len(line) > 0 && line[0] != '#' {
			if e, ok := parsePgpassLine(line); ok {
				e.Start += off
				e.End += off
				out = append(out, e)
			}
		}
	}
	return out
}

func parsePgpassLine(line []byte) (PgpassEntry, bool) {
	var fields [4]string
	var cur strings.Builder
	n := 0
	i := 0
	for ; i < len(line) && n < 4; i++ {
		switch c := line[i]; {
		case c == '\\' && i+1 < len(line):
			i++
			cur.WriteByte(line[i])
		case c == ':':
			fields[n] = cur.String()
			cur.Reset()
			n++
		default:
			cur.WriteByte(c)
		}
	}
	if n < 4 {
		return PgpassEntry{}, false
	}
	raw := line[i:]
	var pw strings.Builder
	for j := 0; j < len(raw); j++ {
		if raw[j] == '\\' && j+1 < len(raw) {
			j++
		}
		pw.WriteByte(raw[j])
	}
	return PgpassEntry{
		Host: fields[0], Port: fields[1], Database: fields[2], User: fields[3],
		Password: pw.String(), Start: i, End: len(line),
	}, true
}

// DetectPgpass reports the passwords of a .pgpass file.
func DetectPgpass(content []byte) []Hit {
	var hits []Hit
	for _, e := range ParsePgpass(content) {
		hits = append(hits, passwordHit("pgpass", "PostgreSQL password in .pgpass",
			e.Start, e.End, e.Password, map[string]string{"host": e.Host, "user": e.User}))
	}
	return hits
}

// passwordHit is the hit of a password in a line-based credential file
// (.pgpass, .netrc, .git-credentials) spanning [start, end): rule
// "<file>-password", or "<file>-placeholder" dismissed when the value is a
// well-known placeholder.
func passwordHit(file, description string, start, end int, password string, details map[string]string) Hit {
	h := Hit{Start: start, End: end, Priority: priorityStructured}
	if IsPlaceholder(password) {
		h.Rule, h.Dismiss = file+"-placeholder", true
		return h
	}
	h.Rule = file + "-password"
	h.Description = description
	h.Kind = KindPassword
	h.Severity = SeverityHigh
	h.Value = Secret(password)
	h.Details = details
	return h
}
