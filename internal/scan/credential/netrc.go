package credential

import (
	"bytes"
	"strings"
)

// NetrcEntry is one machine (or default) entry of a .netrc file that has a
// password.
type NetrcEntry struct {
	Machine  string // "" for the default entry
	Login    string
	Password string
	// Start and End are the byte span of the password token as written
	// (inside the quotes for a quoted token).
	Start, End int
}

type netrcToken struct {
	text       string
	start, end int
}

// netrcTokens splits a .netrc file into whitespace-separated tokens. A token
// may be double-quoted, with backslash escapes inside the quotes. '#' starts
// a comment when it begins a token.
func netrcTokens(content []byte) []netrcToken {
	var toks []netrcToken
	i := 0
	for i < len(content) {
		c := content[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v':
			i++
		case c == '#':
			for i < len(content) && content[i] != '\n' {
				i++
			}
		case c == '"':
			var b strings.Builder
			start := i + 1
			i++
			for i < len(content) && content[i] != '"' {
				if content[i] == '\\' && i+1 < len(content) {
					i++
				}
				b.WriteByte(content[i])
				i++
			}
			toks = append(toks, netrcToken{text: b.String(), start: start, end: min(i, len(content))})
			i++ // closing quote
		default:
			start := i
			for i < len(content) && !strings.ContainsRune(" \t\n\r\f\v", rune(content[i])) {
				i++
			}
			toks = append(toks, netrcToken{text: string(content[start:i]), start: start, end: i})
		}
	}
	return toks
}

// ParseNetrc returns the entries of a .netrc file that carry a password.
// It understands the machine, default, login, password, account and macdef
// keywords; a macro definition's body (up to a blank line) is skipped.
func ParseNetrc(content []byte) []NetrcEntry {
	var out []NetrcEntry
	var cur *NetrcEntry
	flush := func() {
		if cur != nil && cur.End > cur.Start {
			out = append(out, *cur)
		}
		cur = nil
	}
	toks := netrcTokens(content)
	for i := 0; i < len(toks); i++ {
		next := func() (netrcToken, bool) {
			if i+1 < len(toks) {
				i++
				return toks[i], true
			}
			return netrcToken{}, false
		}
		switch toks[i].text {
		case "machine":
			flush()
			cur = &NetrcEntry{}
			if t, ok := next(); ok {
				cur.Machine = t.text
			}
		case "default":
			flush()
			cur = &NetrcEntry{}
		case "login":
			if t, ok := next(); ok && cur != nil {
				cur.Login = t.text
			}
		case "password":
			if t, ok := next(); ok && cur != nil {
				cur.Password, cur.Start, cur.End = t.text, t.start, t.end
			}
		case "account":
			next()
		case "macdef":
			flush()
			t, ok := next()
			if !ok {
				break
			}
			// Skip the macro body: the lines after this one, up to and
			// including the first empty line.
			body := len(content)
			if nl := bytes.IndexByte(content[t.end:], '\n'); nl >= 0 {
				from := t.end + nl + 1
				if blank := bytes.Index(content[from-1:], []byte("\n\n")); blank >= 0 {
					body = from + blank
				}
			}
			for i+1 < len(toks) && toks[i+1].start < body {
				i++
			}
		}
	}
	flush()
	return out
}

// DetectNetrc reports the passwords of a .netrc file.
func DetectNetrc(content []byte) []Hit {
	var hits []Hit
	for _, e := range ParseNetrc(content) {
		hits = append(hits, passwordHit("netrc", "Password in .netrc",
			e.Start, e.End, e.Password, map[string]string{"machine": e.Machine, "login": e.Login}))
	}
	return hits
}
