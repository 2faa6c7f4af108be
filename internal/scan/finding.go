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
// that is not a git repository, a malformed baseline). Every item left out
// is also a Skip, counted in Stats.SkippedBy.
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

// SkipReason says why an item was left out of a scan. Its values are
// stable strings used in reports.
type SkipReason string

// The reasons an item is skipped.
const (
	// SkipBinary: the content is not text (a NUL byte in its first 8 KiB);
	// only the file's path is judged (key stores by name).
	SkipBinary SkipReason = "binary"
	// SkipTooLarge: the file is above Config.MaxFileSize.
	SkipTooLarge SkipReason = "too-large"
	// SkipUnreadable: the item exists but could not be opened, listed or
	// read (permission denied, an I/O error). It is also an error Problem.
	SkipUnreadable SkipReason = "unreadable"
	// SkipSymlink: a symbolic link inside a directory, not followed
	// (without Config.FollowSymlinks) or broken.
	SkipSymlink SkipReason = "symlink"
	// SkipVisited: a directory already scanned, reached again through a
	// symbolic link (a loop or a duplicate).
	SkipVisited SkipReason = "visited"
	// SkipExcluded: a path gitleaks' global allowlist exempts (.git,
	// vendored dependencies, lock files, go.sum, ...); in git history, a
	// change to such a path.
	SkipExcluded SkipReason = "excluded"
	// SkipNotRegular: a device, FIFO or socket.
	SkipNotRegular SkipReason = "not-regular"
)

// Skip is an item left out of a scan: its path, why, and for skips that are
// also Problems the Problem's message.
type Skip struct {
	Path    string     `json:"path"`
	Reason  SkipReason `json:"reason"`
	Message string     `json:"message,omitempty"`
}

// String renders a Skip as one line: "PATH (REASON)", then ": MESSAGE" if
// it has one.
func (s Skip) String() string {
	out := s.Path + " (" + string(s.Reason) + ")"
	if s.Message != "" {
		out += ": " + s.Message
	}
	return out
}

// Stats summarises a scan.
type Stats struct {
	Files   int64 `json:"files"`   // files (or environment variables) scanned
	Bytes   int64 `json:"bytes"`   // bytes scanned, including git history
	Skipped int64 `json:"skipped"` // items left out of the scan, for any reason in SkippedBy
	// SkippedBy counts the skipped items by reason; reasons with no item
	// are absent.
	SkippedBy  map[SkipReason]int64 `json:"skipped_by,omitempty"`
	Commits    int                  `json:"commits,omitempty"`    // commits with changes scanned by --git
	Suppressed int                  `json:"suppressed,omitempty"` // findings suppressed by the baseline
	Duration   float64              `json:"duration"`             // wall-clock seconds
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
