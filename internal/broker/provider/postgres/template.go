package postgres

import (
	"errors"
	"fmt"
	"strings"
)

// Placeholders a creation statement may use. Signet quotes each value
// itself: {{name}} as an identifier, {{password}} and {{expiry}} as
// literals.
const (
	phName     = "name"
	phPassword = "password"
	phExpiry   = "expiry"
)

// maxStatement bounds one creation statement.
const maxStatement = 4096

// segment is a literal piece of a statement or, when ph is set, a
// placeholder.
type segment struct {
	text string
	ph   string
}

// statement is a parsed creation statement.
type statement []segment

// parseStatement parses one creation statement. It refuses unknown
// placeholders, unbalanced braces and placeholders written inside quotes
// (Signet quotes the values; quoting them again would break or inject).
func parseStatement(s string) (statement, error) {
	if strings.TrimSpace(s) == "" {
		return nil, errors.New("empty statement")
	}
	if len(s) > maxStatement {
		return nil, fmt.Errorf("statement of %d bytes: at most %d", len(s), maxStatement)
	}
	var out statement
	rest := s
	for rest != "" {
		open := strings.Index(rest, "{{")
		close := strings.Index(rest, "}}")
		if open < 0 {
			if close >= 0 {
				return nil, errors.New(`"}}" without "{{"`)
			}
			out = append(out, segment{text: rest})
			break
		}
		if close >= 0 && close < open {
			return nil, errors.New(`"}}" without "{{"`)
		}
		end := strings.Index(rest[open+2:], "}}")
		if end < 0 {
			return nil, errors.New(`"{{" without "}}"`)
		}
		name := strings.TrimSpace(rest[open+2 : open+2+end])
		switch name {
		case phName, phPassword, phExpiry:
		default:
			return nil, fmt.Errorf("unknown placeholder {{%s}}: use {{name}}, {{password}} or {{expiry}}", name)
		}
		before := rest[:open]
		after := rest[open+2+end+2:]
		if strings.HasSuffix(before, "'") || strings.HasSuffix(before, `"`) || strings.HasPrefix(after, "'") || strings.HasPrefix(after, `"`) {
			return nil, fmt.Errorf("{{%s}} is quoted: Signet quotes placeholder values itself, remove the quotes", name)
		}
		if strings.Contains(before, "{") || strings.Contains(before, "}") {
			return nil, errors.New(`stray "{" or "}" outside a placeholder`)
		}
		if before != "" {
			out = append(out, segment{text: before})
		}
		out = append(out, segment{ph: name})
		rest = after
	}
	for _, seg := range out {
		if seg.ph == "" && (strings.Contains(seg.text, "{{") || strings.Contains(seg.text, "}}")) {
			return nil, errors.New(`unbalanced "{{" or "}}"`)
		}
	}
	return out, nil
}

// parseStatements parses the creation statements of a credential. At least
// one statement is required and {{name}} must appear in the first: that is
// the one that creates the role.
func parseStatements(in []string) ([]statement, error) {
	if len(in) == 0 {
		return nil, errors.New("creation_statements: at least one statement is required, such as \"CREATE ROLE {{name}} LOGIN PASSWORD {{password}} VALID UNTIL {{expiry}}\"")
	}
	var errs []error
	out := make([]statement, 0, len(in))
	for i, s := range in {
		st, err := parseStatement(s)
		if err != nil {
			errs = append(errs, fmt.Errorf("creation_statements[%d]: %w", i, err))
			continue
		}
		out = append(out, st)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if !out[0].uses(phName) {
		return nil, errors.New("creation_statements[0]: must create the role {{name}}")
	}
	return out, nil
}

func (st statement) uses(ph string) bool {
	for _, seg := range st {
		if seg.ph == ph {
			return true
		}
	}
	return false
}

// render writes the statement with each placeholder replaced by its quoted
// value from vals.
func (st statement) render(vals map[string]string) string {
	var b strings.Builder
	for _, seg := range st {
		if seg.ph == "" {
			b.WriteString(seg.text)
			continue
		}
		b.WriteString(vals[seg.ph])
	}
	return b.String()
}

// quoteLiteral quotes s as a PostgreSQL string literal (with
// standard_conforming_strings, the default since 9.1; E” is never used).
func quoteLiteral(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}
