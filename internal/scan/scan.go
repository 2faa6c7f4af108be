// Package scan finds static credentials — the secrets workload identity
// replaces — in files, directories, git history and the process
// environment, and reports them without ever revealing them.
//
// Detection combines gitleaks' maintained rule set, used as a library, with
// the format parsers of package credential (private keys, kubeconfigs,
// .pgpass/.netrc/.git-credentials, Docker and cloud credential files, CI
// configuration, long-lived JWTs). When both match the same secret it is
// reported once, by the more specific parser; a parser's verdict that a
// match is harmless (an encrypted key, a short-lived JWT) suppresses it.
//
// A Finding carries a redacted preview and a keyed fingerprint of its
// secret, never the secret: gitleaks' findings are converted, and their
// secret-bearing fields cleared, as soon as they are produced.
//
// Files are scanned in parallel by a bounded pool of workers. Items that
// cannot be scanned (unreadable, binary, oversized, symbolic-link loops, a
// directory that is not a git repository) become Problems and the scan
// carries on.
package scan

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/zricethezav/gitleaks/v8/sources"

	"github.com/signet-id/signet/internal/scan/credential"
)

// DefaultMaxFileSize is the size above which files are skipped unless
// Config.MaxFileSize says otherwise.
const DefaultMaxFileSize = 10 << 20

// Config configures a Scanner.
type Config struct {
	// Fingerprinter computes the findings' fingerprints. Required.
	Fingerprinter *Fingerprinter
	// MaxFileSize is the size in bytes above which files are skipped;
	// zero means DefaultMaxFileSize.
	MaxFileSize int64
	// Workers bounds the files scanned at once; zero means GOMAXPROCS.
	Workers int
	// FollowSymlinks makes directory walks follow symbolic links to files
	// and directories, skipping directories already visited (which breaks
	// loops). By default links inside directories are not followed; links
	// named on the command line always are.
	FollowSymlinks bool
	// BaselineFile, if set, names a previous JSON report whose findings are
	// suppressed (see Baseline). A baseline that cannot be read or parsed is
	// a Problem, and then nothing is suppressed.
	BaselineFile string
	// OnProblem, if set, is called for each Problem as it happens, one call
	// at a time.
	OnProblem func(Problem)
	// OnSkip, if set, is called for each item left out of the scan as it
	// happens, one call at a time (with OnProblem's calls too).
	OnSkip func(Skip)
	// Progress, if set, is added to as the scan goes, for a progress
	// display (see Progress and Measure).
	Progress *Progress
}

// Targets says what a scan covers.
type Targets struct {
	// Paths are files and directories to scan.
	Paths []string
	// Git also scans the whole history of each path, which must be in a git
	// repository. A secret found both in the history and in the working
	// tree at the same path is reported once, with the commit that added it.
	Git bool
	// Env holds environment entries ("NAME=VALUE", as from os.Environ) to
	// scan; each is reported at the location "env:NAME". The fingerprint key
	// variable is never scanned.
	Env []string
}

// Scanner scans for static credentials. It is safe for concurrent use.
type Scanner struct {
	cfg   Config
	rules *rules
	// onHold, if set, is told the size of each buffer allocated to hold
	// file content (tests only).
	onHold func(n int)
}

// New returns a Scanner. It loads gitleaks' default rules, which takes a
// moment the first time in a process.
func New(ctx context.Context, cfg Config) (*Scanner, error) {
	if cfg.Fingerprinter == nil {
		return nil, errors.New("new scanner: no fingerprinter")
	}
	if cfg.MaxFileSize <= 0 {
		cfg.MaxFileSize = DefaultMaxFileSize
	}
	if cfg.Workers <= 0 {
		cfg.Workers = runtime.GOMAXPROCS(0)
	}
	r, err := newRules(ctx)
	if err != nil {
		return nil, fmt.Errorf("new scanner: %w", err)
	}
	return &Scanner{cfg: cfg, rules: r}, nil
}

// Scan scans t and returns the report. Problems with single items are in
// the report; the error is non-nil only if ctx ends the scan early.
func (s *Scanner) Scan(ctx context.Context, t Targets) (*Report, error) {
	start := time.Now()
	c := newCollector(s.cfg.OnProblem, s.cfg.OnSkip)
	if s.cfg.Progress != nil {
		c.progress = s.cfg.Progress
	}
	var baseline *Baseline
	if s.cfg.BaselineFile != "" {
		b, err := LoadBaseline(s.cfg.BaselineFile)
		if err != nil {
			c.problem(Problem{Path: s.cfg.BaselineFile, Message: err.Error()})
		}
		baseline = b
		c.baseline = b
	}
	if len(t.Paths) > 0 {
		s.scanPaths(ctx, t.Paths, c)
	}
	if t.Git {
		for _, p := range t.Paths {
			s.scanHistory(ctx, p, c)
		}
	}
	for _, kv := range t.Env {
		s.scanEnv(ctx, kv, c)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("scan: %w", err)
	}
	rep := &Report{
		Version:  ReportVersion,
		Findings: c.findings,
		Errors:   c.problems,
		Stats: Stats{
			Files:   c.files.Load(),
			Bytes:   c.bytes.Load(),
			Commits: len(c.commits),
		},
	}
	for reason, n := range c.skippedBy {
		rep.Stats.Skipped += n
		if rep.Stats.SkippedBy == nil {
			rep.Stats.SkippedBy = map[SkipReason]int64{}
		}
		rep.Stats.SkippedBy[reason] = n
	}
	if t.Git {
		rep.Findings = preferHistory(rep.Findings)
	}
	if baseline != nil {
		kept := rep.Findings[:0]
		for _, f := range rep.Findings {
			if baseline.Contains(f) {
				rep.Stats.Suppressed++
				continue
			}
			kept = append(kept, f)
		}
		rep.Findings = kept
	}
	if rep.Findings == nil {
		rep.Findings = []Finding{}
	}
	if rep.Errors == nil {
		rep.Errors = []Problem{}
	}
	sortFindings(rep.Findings)
	slices.SortStableFunc(rep.Errors, func(a, b Problem) int { return strings.Compare(a.Path, b.Path) })
	rep.Stats.Duration = time.Since(start).Seconds()
	return rep, nil
}

// preferHistory drops working-tree findings whose secret was also found at
// the same path in the git history: the history finding names the commit
// that added it.
func preferHistory(fs []Finding) []Finding {
	type key struct{ path, fp string }
	inHistory := map[key]bool{}
	for _, f := range fs {
		if f.Location.Commit != "" {
			inHistory[key{f.Location.Path, f.Fingerprint}] = true
		}
	}
	return slices.DeleteFunc(fs, func(f Finding) bool {
		return f.Location.Commit == "" && inHistory[key{f.Location.Path, f.Fingerprint}]
	})
}

// collector gathers results from concurrent workers.
type collector struct {
	onProblem func(Problem)
	onSkip    func(Skip)
	// progress counts the work done; baseline, if set, holds the findings
	// it does not count.
	progress *Progress
	baseline *Baseline

	files, bytes atomic.Int64

	mu        sync.Mutex
	findings  []Finding
	problems  []Problem
	commits   map[string]struct{}
	skippedBy map[SkipReason]int64
}

func newCollector(onProblem func(Problem), onSkip func(Skip)) *collector {
	return &collector{onProblem: onProblem, onSkip: onSkip, progress: &Progress{}, commits: map[string]struct{}{}, skippedBy: map[SkipReason]int64{}}
}

func (c *collector) add(fs []Finding) {
	if len(fs) == 0 {
		return
	}
	n := int64(len(fs))
	if c.baseline != nil {
		for _, f := range fs {
			if c.baseline.Contains(f) {
				n--
			}
		}
	}
	c.progress.findings.Add(n)
	c.mu.Lock()
	c.findings = append(c.findings, fs...)
	c.mu.Unlock()
}

func (c *collector) problem(p Problem) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.problems = append(c.problems, p)
	if c.onProblem != nil {
		c.onProblem(p)
	}
}

// skip records an item left out of the scan; a non-empty p.Message also
// records p as a Problem.
func (c *collector) skip(reason SkipReason, p Problem) {
	if p.Message != "" {
		c.problem(p)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.skippedBy[reason]++
	if c.onSkip != nil {
		c.onSkip(Skip{Path: p.Path, Reason: reason, Message: p.Message})
	}
}

func (c *collector) commit(sha string) {
	c.mu.Lock()
	c.commits[sha] = struct{}{}
	c.mu.Unlock()
}

// unit is one piece of content to scan and where it came from: a whole
// file, git change or variable, or one chunk of a large one (see chunk.go).
type unit struct {
	path     string // displayed location
	rulePath string // path seen by rules ("" for the environment)
	// data is the content; text is what the gitleaks rules scan (the same
	// bytes, or "" for a binary file, of which only the path is judged).
	data      []byte
	text      string
	binary    bool
	startLine int // line number of data's first line; 0: no line numbers
	// startCol is how many bytes of data's first line precede data (in a
	// chunk that starts mid-line).
	startCol int
	commit   *sources.CommitInfo
	// env is the length of the variable name when data is "NAME=VALUE".
	env int
	// part says data is one chunk of the content, of which only the hits
	// starting in own are this chunk's (the others are its neighbours').
	part bool
	own  [2]int
	// size is the whole content's size; file, if set, reads it, for the
	// fingerprint of a hit on the whole file (a path rule's) when data
	// does not hold it all.
	size int64
	file io.ReaderAt
}

// detect runs both detectors on u and returns its findings.
func (s *Scanner) detect(ctx context.Context, u unit) []Finding {
	fullLen := max(len(u.data), int(u.size))
	glHits := s.rules.hits(ctx, u.rulePath, u.text, fullLen)
	var own []credential.Hit
	switch {
	case u.binary:
	case u.env > 0:
		own = credential.DetectEnv(u.data, u.env)
	case u.part:
		own = credential.DetectPart(u.data)
	default:
		own = credential.Detect(u.rulePath, u.data)
	}
	defer func() {
		// Wipe the copies of secret values, kept or dropped by merge.
		for _, hs := range [][]credential.Hit{glHits, own} {
			for _, h := range hs {
				clear(h.Value)
			}
		}
	}()
	hits := merge(glHits, own)
	if u.part {
		hits = slices.DeleteFunc(hits, func(h credential.Hit) bool { return h.Start < u.own[0] || h.Start >= u.own[1] })
	}
	if len(hits) == 0 {
		return nil
	}
	var lines []int
	if u.startLine > 0 {
		lines = lineStarts(u.text) // [0] for a binary file
	}
	out := make([]Finding, 0, len(hits))
	for _, h := range hits {
		out = append(out, s.finding(u, h, lines))
	}
	return out
}

// finding turns a hit into a Finding: fingerprint, preview, location.
func (s *Scanner) finding(u unit, h credential.Hit, lines []int) Finding {
	// A hit on the whole content (a path rule's) when data holds only part.
	wholeFile := h.Value == nil && h.Start <= 0 && h.End > len(u.data) && u.file != nil
	h.Start = min(max(h.Start, 0), len(u.data))
	h.End = min(max(h.End, h.Start), len(u.data))
	written := u.data[h.Start:h.End]
	value := []byte(h.Value)
	if value == nil {
		value = written
	}
	fp := ""
	if wholeFile {
		// On a read error the fingerprint is of the bytes at hand.
		fp, _ = s.cfg.Fingerprinter.SumReader(io.NewSectionReader(u.file, 0, u.size))
	}
	if fp == "" {
		fp = s.cfg.Fingerprinter.Sum(value)
	}
	f := Finding{
		RuleID:      h.Rule,
		Detector:    "signet",
		Kind:        h.Kind,
		Description: h.Description,
		Severity:    h.Severity,
		Preview:     h.Preview,
		Fingerprint: fp,
		Details:     h.Details,
		Location:    Location{Path: u.path},
	}
	if h.Priority == 0 {
		f.Detector = "gitleaks"
	}
	if f.Preview == "" {
		f.Preview = credential.Preview(string(written))
	}
	if len(f.Details) == 0 {
		f.Details = nil
	}
	if lines != nil {
		line, col := position(lines, h.Start)
		endLine, _ := position(lines, max(h.End-1, h.Start))
		f.Location.Line = u.startLine + line
		f.Location.Column = col
		if line == 0 {
			f.Location.Column += u.startCol
		}
		if endLine != line {
			f.Location.EndLine = u.startLine + endLine
		}
	}
	if ci := u.commit; ci != nil {
		f.Location.Commit = ci.SHA
		f.Location.Author = ci.AuthorName
		f.Location.Email = ci.AuthorEmail
		f.Location.Date = ci.Date
	}
	return f
}

// position returns the 0-based line and 1-based byte column of offset off.
func position(lines []int, off int) (line, col int) {
	i, found := slices.BinarySearch(lines, off)
	if !found {
		i--
	}
	i = max(i, 0)
	return i, off - lines[i] + 1
}

// merge reconciles gitleaks' hits with the format parsers' hits on the same
// content, so that each secret is reported once:
//   - a gitleaks hit overlapping a parser's dismissal (an encrypted key, a
//     short-lived JWT, a placeholder) is dropped;
//   - a gitleaks hit overlapping a parser's finding is dropped, the parser
//     describing the secret more precisely — unless the parser judged only
//     by a variable's name and the gitleaks rule recognises the value
//     itself (anything but its generic rule), in which case the parser's
//     finding is dropped;
//   - overlapping parser findings are reported once, the most severe (then
//     highest priority) winning.
func merge(gl, own []credential.Hit) []credential.Hit {
	var dismissals, found []credential.Hit
	for _, h := range own {
		if h.Dismiss {
			dismissals = append(dismissals, h)
		} else {
			found = append(found, h)
		}
	}
	var out []credential.Hit
	for _, g := range gl {
		if slices.ContainsFunc(dismissals, g.Overlaps) {
			continue
		}
		specific := !strings.HasPrefix(g.Rule, "generic")
		beaten := false
		found = slices.DeleteFunc(found, func(h credential.Hit) bool {
			if !h.Overlaps(g) {
				return false
			}
			if h.NameOnly && specific {
				return true
			}
			beaten = true
			return false
		})
		if !beaten {
			out = append(out, g)
		}
	}
	slices.SortStableFunc(found, func(a, b credential.Hit) int {
		if r := b.Severity.Rank() - a.Severity.Rank(); r != 0 {
			return r
		}
		return b.Priority - a.Priority
	})
	var kept []credential.Hit
	for _, h := range found {
		if !slices.ContainsFunc(kept, h.Overlaps) {
			kept = append(kept, h)
		}
	}
	return append(out, kept...)
}

// scanEnv scans one "NAME=VALUE" environment entry.
func (s *Scanner) scanEnv(ctx context.Context, kv string, c *collector) {
	if !envScanned(kv) {
		return
	}
	name, _, _ := strings.Cut(kv, "=")
	c.files.Add(1)
	c.bytes.Add(int64(len(kv)))
	c.add(s.detect(ctx, unit{path: "env:" + name, data: []byte(kv), text: kv, env: len(name)}))
	c.fileDone(int64(len(kv)), 0)
}

// envScanned reports whether an environment entry is scanned: a
// "NAME=VALUE" entry other than the fingerprint key's.
func envScanned(kv string) bool {
	name, _, ok := strings.Cut(kv, "=")
	return ok && name != "" && name != FingerprintKeyEnv
}
