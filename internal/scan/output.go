package scan

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"unicode"
)

// Format is a report output format.
type Format string

// The output formats.
const (
	FormatTable Format = "table"
	FormatJSON  Format = "json"
	FormatSARIF Format = "sarif"
)

// ParseFormat validates a format name.
func ParseFormat(s string) (Format, error) {
	switch f := Format(s); f {
	case FormatTable, FormatJSON, FormatSARIF:
		return f, nil
	}
	return "", fmt.Errorf("unknown format %q (want table, json or sarif)", s)
}

// Write writes r to w in format f.
func (r *Report) Write(w io.Writer, f Format) error {
	switch f {
	case FormatTable:
		return r.WriteTable(w)
	case FormatJSON:
		return r.WriteJSON(w)
	case FormatSARIF:
		return r.WriteSARIF(w)
	}
	return fmt.Errorf("write report: unknown format %q", f)
}

// WriteJSON writes r as an indented JSON document (see Report).
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(r); err != nil {
		return fmt.Errorf("write json report: %w", err)
	}
	return nil
}

// WriteTable writes r as a table for people, one finding per row, followed
// by a summary line.
func (r *Report) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	if len(r.Findings) > 0 {
		fmt.Fprintln(tw, "SEVERITY\tKIND\tRULE\tLOCATION\tPREVIEW\tFINGERPRINT")
	}
	for _, f := range r.Findings {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n",
			f.Severity, f.Kind, printable(f.RuleID), printable(f.Location.String()), printable(f.Preview), f.Fingerprint)
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write table report: %w", err)
	}
	s := r.Stats
	summary := fmt.Sprintf("%d finding(s) in %d file(s), %s scanned", len(r.Findings), s.Files, humanBytes(s.Bytes))
	if s.Commits > 0 {
		summary += fmt.Sprintf(", %d commit(s)", s.Commits)
	}
	if s.Suppressed > 0 {
		summary += fmt.Sprintf(", %d suppressed by baseline", s.Suppressed)
	}
	if s.Skipped > 0 {
		summary += fmt.Sprintf(", %d skipped (%s)", s.Skipped, skipCounts(s.SkippedBy))
	}
	summary += fmt.Sprintf(", %.2fs", s.Duration)
	if _, err := fmt.Fprintln(w, summary); err != nil {
		return fmt.Errorf("write table report: %w", err)
	}
	return nil
}

// String renders a location as path:line:column, with "@" and the short
// commit for history findings.
func (l Location) String() string {
	s := l.Path
	if l.Line > 0 {
		s += ":" + strconv.Itoa(l.Line)
		if l.Column > 0 {
			s += ":" + strconv.Itoa(l.Column)
		}
	}
	if l.Commit != "" {
		s += "@" + l.Commit[:min(len(l.Commit), 10)]
	}
	return s
}

// printable quotes text holding control or other non-printing characters
// (a file name with a newline or terminal escape, say) so a table row stays
// one harmless line.
func printable(s string) string {
	if strings.IndexFunc(s, func(r rune) bool { return !unicode.IsPrint(r) }) >= 0 {
		return strconv.Quote(s)
	}
	return s
}

// skipCounts renders skip counts by reason, most first: "3 excluded, 1 binary".
func skipCounts(by map[SkipReason]int64) string {
	reasons := slices.Collect(maps.Keys(by))
	slices.SortFunc(reasons, func(a, b SkipReason) int {
		return cmp.Or(cmp.Compare(by[b], by[a]), cmp.Compare(a, b))
	})
	parts := make([]string, len(reasons))
	for i, r := range reasons {
		parts[i] = fmt.Sprintf("%d %s", by[r], r)
	}
	return strings.Join(parts, ", ")
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
