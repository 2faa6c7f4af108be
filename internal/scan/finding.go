package scan

import (
	"cmp"
	"slices"

	"github.com/signet-id/signet/internal/scan/credential"
)

// ReportVersion is the version of the JSON report format written by
// WriteJSON and read by ParseBaseline.
const ReportVersion = 1

// Finding is one static credential found by a scan. It never holds the
// secret: only a redacted Preview and a keyed Fingerprint of it. Findings
// marshal to the stable JSON form of the report, which is also what the
// server's inventory will accept.
type Finding struct {
	RuleID      string              `json:"rule_id"`
	Detector    string              `json:"detector"` // "gitleaks" (maintained rules) or "signet" (format parsers)
	Kind        credential.Kind     `json:"kind"`
	Description string              `json:"description"`
	Severity    credential.Severity `json:"severity"`
	Location    Location            `json:"location"`
	// Preview shows at most the first four characters of the secret and
	// never more than a quarter of it, then its length: "ghp_…(40)".
	Preview string `json:"preview"`
	// Fingerprint is the first 16 hex digits of HMAC-SHA256 of the secret
	// under the fingerprint key: equal secrets have equal fingerprints, and
	// without the key it reveals nothing about the secret.
	Fingerprint string `json:"fingerprint"`
	// Details holds non-secret facts (certificate validity, JWT lifetime,
	// registry, host, user name).
	Details map[string]string `json:"details,omitempty"`
}

// Location says where a Finding is: a file (Path, Line, Column; EndLine for
// multi-line secrets), a commit in a repository's history (plus Commit,
// Author, Email, Date), or an environment variable (Path "env:NAME", no
// line).
type Location struct {
	Path    string `json:"path"`
	Line    int    `json:"line,omitempty"`
	Column  int    `json:"column,omitempty"`
	EndLine int    `json:"end_line,omitempty"`
	Commit  string `json:"commit,omitempty"`
	Author  string `json:"author,omitempty"`
	Email   string `json:"email,omitempty"`
	Date    string `json:"date,omitempty"` // RFC 3339, the commit's author date
}

// Problem is an item a scan could not scan fully. Skipped problems are
// notices about items left out on purpose (binary or oversized files,
// symbolic-link loops); the others are errors (unreadable files, a path
// that is not a git repository, a malformed baseline).
type Problem struct {
	Path    string `json:"path"`
	Message string `json:"message"`
	Skipped bool   `json:"skipped,omitempty"`
}

// String renders a Problem as one line: "PATH: MESSAGE".
func (p Problem) String() string {
	if p.Path == "" {
		return p.Message
	}
	return p.Path + ": " + p.Message
}

// Stats summarises a scan.
type Stats struct {
	Files      int64   `json:"files"`                // files (or environment variables) scanned
	Bytes      int64   `json:"bytes"`                // bytes scanned, including git history
	Skipped    int64   `json:"skipped"`              // items skipped (see Problem.Skipped)
	Commits    int     `json:"commits,omitempty"`    // commits with changes scanned by --git
	Suppressed int     `json:"suppressed,omitempty"` // findings suppressed by the baseline
	Duration   float64 `json:"duration"`             // wall-clock seconds
}

// Report is the result of a scan, and the JSON document written by
// WriteJSON. Findings are sorted by location.
type Report struct {
	Version  int       `json:"version"`
	Findings []Finding `json:"findings"`
	Errors   []Problem `json:"errors"`
	Stats    Stats     `json:"stats"`
}

// Failed reports whether any item could not be scanned (a Problem that is
// not a skip notice).
func (r *Report) Failed() bool {
	for _, p := range r.Errors {
		if !p.Skipped {
			return true
		}
	}
	return false
}

// compareFindings orders findings by path, line, column, commit date and
// rule, for stable output.
func compareFindings(a, b Finding) int {
	return cmp.Or(
		cmp.Compare(a.Location.Path, b.Location.Path),
		cmp.Compare(a.Location.Line, b.Location.Line),
		cmp.Compare(a.Location.Column, b.Location.Column),
		cmp.Compare(a.Location.Date, b.Location.Date),
		cmp.Compare(a.Location.Commit, b.Location.Commit),
		cmp.Compare(a.RuleID, b.RuleID),
		cmp.Compare(a.Fingerprint, b.Fingerprint),
	)
}

func sortFindings(fs []Finding) {
	slices.SortFunc(fs, compareFindings)
}
