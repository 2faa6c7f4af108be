package mysql

import (
	"fmt"
	"regexp"
	"strings"
)

// privileges are the privileges a grant may list: those that act on
// databases and tables. Server-wide administrative privileges (SUPER,
// FILE, PROCESS, GRANT OPTION, CREATE USER, …) are refused: a brokered
// user must never administer the server or hand its rights on.
var privileges = map[string]bool{
	"SELECT": true, "INSERT": true, "UPDATE": true, "DELETE": true,
	"CREATE": true, "DROP": true, "INDEX": true, "ALTER": true, "REFERENCES": true,
	"CREATE TEMPORARY TABLES": true, "LOCK TABLES": true, "EXECUTE": true,
	"CREATE VIEW": true, "SHOW VIEW": true, "CREATE ROUTINE": true, "ALTER ROUTINE": true,
	"EVENT": true, "TRIGGER": true,
}

// grant is one validated grant: a privilege list on a db.table pattern,
// rendered with every name backquoted by Signet.
type grant struct {
	privs []string
	db    string // "*" or a name
	table string // "*" or a name
}

// ident is an unquoted MySQL identifier (letters, digits, _ and $), or
// one in backquotes holding no backquote; a wildcard is "*".
const identPattern = "(\\*|[A-Za-z0-9_$]+|`[^`]+`)"

var grantRe = regexp.MustCompile(`^(?i)\s*(.+?)\s+ON\s+` + identPattern + `\.` + identPattern + `\s*$`)

// parseGrant reads "SELECT, INSERT ON reports.*".
func parseGrant(s string) (grant, error) {
	if len(s) > 512 {
		return grant{}, fmt.Errorf("longer than 512 bytes")
	}
	m := grantRe.FindStringSubmatch(s)
	if m == nil {
		return grant{}, fmt.Errorf("want PRIVILEGE[, PRIVILEGE…] ON db.table (db and table may be *), e.g. \"SELECT ON reports.*\"")
	}
	var g grant
	for p := range strings.SplitSeq(m[1], ",") {
		p = strings.ToUpper(strings.Join(strings.Fields(p), " "))
		if p == "ALL" || p == "ALL PRIVILEGES" {
			return grant{}, fmt.Errorf("ALL is refused: list the privileges the credential needs")
		}
		if !privileges[p] {
			return grant{}, fmt.Errorf("privilege %q is not one a brokered user may hold (accepted: %s)", p, acceptedPrivileges())
		}
		g.privs = append(g.privs, p)
	}
	g.db, g.table = unquote(m[2]), unquote(m[3])
	if g.db == "*" && g.table != "*" {
		return grant{}, fmt.Errorf("*.%s: a table pattern needs a database", g.table)
	}
	return g, nil
}

func unquote(s string) string {
	if strings.HasPrefix(s, "`") {
		return s[1 : len(s)-1]
	}
	return s
}

func acceptedPrivileges() string {
	return "SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, INDEX, ALTER, REFERENCES, CREATE TEMPORARY TABLES, " +
		"LOCK TABLES, EXECUTE, CREATE VIEW, SHOW VIEW, CREATE ROUTINE, ALTER ROUTINE, EVENT, TRIGGER"
}

// quoteIdent backquotes a name, or leaves a wildcard.
func quoteIdent(s string) string {
	if s == "*" {
		return s
	}
	return "`" + strings.ReplaceAll(s, "`", "``") + "`"
}

// statement renders the GRANT for account (already quoted).
func (g grant) statement(account string) string {
	return "GRANT " + strings.Join(g.privs, ", ") + " ON " + quoteIdent(g.db) + "." + quoteIdent(g.table) + " TO " + account
}

// parseGrants validates every grant, reporting each bad one by index.
func parseGrants(ss []string) ([]grant, error) {
	if len(ss) == 0 {
		return nil, fmt.Errorf("grants: at least one grant is required, e.g. [\"SELECT ON reports.*\"]")
	}
	out := make([]grant, 0, len(ss))
	var errs []string
	for i, s := range ss {
		g, err := parseGrant(s)
		if err != nil {
			errs = append(errs, fmt.Sprintf("grants[%d]: %v", i, err))
			continue
		}
		out = append(out, g)
	}
	if errs != nil {
		return nil, fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return out, nil
}
