package scan

import (
	"context"
	"encoding/base64"
	"math"
	"regexp/syntax"
	"slices"
	"strings"
	"sync/atomic"
	"unicode"
	"unicode/utf8"

	ahocorasick "github.com/BobuSumisu/aho-corasick"
	"github.com/zricethezav/gitleaks/v8/config"
	"github.com/zricethezav/gitleaks/v8/detect"
	"github.com/zricethezav/gitleaks/v8/detect/codec"
	"github.com/zricethezav/gitleaks/v8/report"

	"github.com/signet-id/signet/internal/scan/credential"
)

// Region scanning.
//
// gitleaks runs a rule over a whole fragment whenever one of the rule's
// keywords occurs anywhere in it, and its generic rule's regular expression
// is slow (a few MB/s). But a rule's match always contains one of its
// keywords — that is what makes the keyword a valid prefilter — and the
// regular expression bounds how many newlines a match can span. So a match
// lies within that many lines of a keyword occurrence, and running each rule
// only over those lines finds exactly the matches a whole-text run finds.
//
// gitleaks also decodes base64, hex, percent and unicode escapes and
// rescans the decoded text, keeping the matches that overlap a decoded
// segment; the keyword may appear only once decoded. Such a match lies
// within the rule's newline bound of the segment, so every rule of bounded
// reach runs, with decoding, over the lines near each line that may hold an
// encoded segment. The few rules of unbounded reach (private keys, for one)
// run, with decoding, over the whole text, when a keyword of theirs occurs
// in it, raw or decoded.
//
// The argument rests on gitleaks' rules keeping to the keyword contract;
// TestRegionsMatchWholeScan compares the two ways of scanning.
//
// Regions are bounded in bytes as well as in lines, so that a file that is
// one long line (minified code, a JSON dump) costs time linear in its size:
// a rule sees at most its margin of bytes either side of a keyword — the
// longest match its expression allows, plus one byte of context, but at
// least windowCap so that a line of ordinary length is seen whole (its
// "gitleaks:allow" comment included). Rules whose matches are unbounded get
// windowCap, or blockCap when they may span any number of lines (private
// keys). Whole lines within the margin are kept; only a line longer than
// twice the margin is cut. A long merged region is further split into
// pieces of pieceSize that overlap by the margin, each reporting the matches
// that start in its own part, so that gitleaks' per-match work on the
// match's line (its allowlists by line, the gitleaks:allow check) is bounded
// too. On text whose lines are shorter than windowCap nothing is cut and the
// results are exactly those of a whole-text scan; on longer lines a match
// longer than its rule's margin is cut short, and allowlists by line see the
// part of the line in the region.
//
// gitleaks lower-cases text with Unicode rules before looking for keywords,
// and two non-ASCII characters lower-case to ASCII letters: KELVIN SIGN to
// 'k' and LATIN CAPITAL LETTER I WITH DOT ABOVE to 'i'. The keyword search
// here maps them likewise (see lowerText).

// windowedRule is one gitleaks rule with a detector of its own.
type windowedRule struct {
	id  string
	det *detect.Detector
	// radius is the most newlines a match can contain; -1 if unbounded.
	radius int
	// margin is how many bytes either side of a keyword the rule sees on a
	// long line (see ruleMargin).
	margin int
	rule   config.Rule
	// needsPath says the rule's verdict depends on the file's path (a
	// path-limited rule, or an allowlist by path); the others run without
	// it, sparing gitleaks' per-call check of the global path allowlist,
	// which the walk has already applied.
	needsPath bool
}

// regionIndex routes each keyword to the rules it wakes.
type regionIndex struct {
	rules   []windowedRule
	trie    *ahocorasick.Trie
	kwRules [][]int // per trie pattern, indexes into rules
	// keyless holds the rules without keywords (path rules), which run on
	// every text; nil if there are none. keylessReadText says one of them
	// has a regular expression.
	keyless         *detect.Detector
	keylessReadText bool
	// bounded and unbounded hold the rules of bounded and unbounded
	// newline reach, decoding as gitleaks does; reach is the largest bound.
	bounded, unbounded *detect.Detector
	reach              int
	// reachBytes is the largest margin of the rules of bounded reach.
	reachBytes int
	// unboundedRules indexes the rules of unbounded reach in rules.
	unboundedRules []int
	// allowlists are gitleaks' global allowlists, checked here once per
	// text rather than by every per-rule run.
	allowlists []*config.Allowlist
	// cost, if set, counts the work handed to gitleaks (tests only).
	cost *scanCost
}

// scanCost counts the work handed to gitleaks' detectors: the bytes of the
// fragments, the longest line in any fragment (gitleaks searches a match's
// line again for each regular-expression match, before its entropy and
// allowlist checks), and, per finding, the bytes of its line. Its methods
// are safe for concurrent use and do nothing on a nil *scanCost.
type scanCost struct {
	fragments, findingLines, longestLine atomic.Int64
}

func (c *scanCost) add(fragment string, findingLines int) {
	if c == nil {
		return
	}
	c.fragments.Add(int64(len(fragment)))
	c.findingLines.Add(int64(findingLines))
	longest := 0
	for rest := fragment; rest != ""; {
		i := strings.IndexByte(rest, '\n')
		if i < 0 {
			i = len(rest)
		} else {
			i++
		}
		longest = max(longest, i)
		rest = rest[i:]
	}
	for {
		old := c.longestLine.Load()
		if int64(longest) <= old || c.longestLine.CompareAndSwap(old, int64(longest)) {
			return
		}
	}
}

// newRegionIndex builds per-rule detectors for cfg.
func newRegionIndex(ctx context.Context, cfg config.Config) *regionIndex {
	ix := &regionIndex{allowlists: cfg.Allowlists}
	ids := make([]string, 0, len(cfg.Rules))
	for id := range cfg.Rules {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	var keywords []string
	kwIndex := map[string]int{}
	keyless := config.Config{Rules: map[string]config.Rule{}, Keywords: map[string]struct{}{}, Allowlists: cfg.Allowlists}
	bounded := config.Config{Rules: map[string]config.Rule{}, Keywords: map[string]struct{}{}, Allowlists: cfg.Allowlists}
	unbounded := config.Config{Rules: map[string]config.Rule{}, Keywords: map[string]struct{}{}, Allowlists: cfg.Allowlists}
	for _, id := range ids {
		r := cfg.Rules[id]
		if r.SkipReport || len(r.RequiredRules) > 0 {
			// Parts of multi-part rules need the whole text; none are in
			// the default rules. Keep them with the keyless rules.
			keyless.Rules[id] = r
			for _, k := range r.Keywords {
				keyless.Keywords[k] = struct{}{}
			}
			continue
		}
		if len(r.Keywords) == 0 || slices.ContainsFunc(r.Keywords, notASCII) {
			// No keyword to find regions by (or one the ASCII keyword
			// search cannot see): such rules run over every whole text.
			keyless.Rules[id] = r
			for _, k := range r.Keywords {
				keyless.Keywords[k] = struct{}{}
			}
			continue
		}
		one := config.Config{
			Rules:      map[string]config.Rule{id: r},
			Keywords:   map[string]struct{}{},
			Allowlists: cfg.Allowlists,
		}
		ri := len(ix.rules)
		for _, k := range r.Keywords {
			one.Keywords[k] = struct{}{}
			pi, ok := kwIndex[k]
			if !ok {
				pi = len(keywords)
				kwIndex[k] = pi
				keywords = append(keywords, k)
				ix.kwRules = append(ix.kwRules, nil)
			}
			if !slices.Contains(ix.kwRules[pi], ri) {
				ix.kwRules[pi] = append(ix.kwRules[pi], ri)
			}
		}
		radius, longest := -1, -1
		if r.Regex != nil {
			radius = newlineBound(r.Regex.String())
			longest = maxMatchLen(r.Regex.String())
		}
		margin := ruleMargin(longest, radius)
		ix.rules = append(ix.rules, windowedRule{
			id: id, det: detect.NewDetectorContext(ctx, one), radius: radius, margin: margin, rule: r,
			needsPath: r.Path != nil || slices.ContainsFunc(r.Allowlists, hasPaths) ||
				slices.ContainsFunc(cfg.Allowlists, func(a *config.Allowlist) bool {
					return hasPaths(a) && a.MatchCondition == config.AllowlistMatchAnd
				}),
		})
		reach := &bounded
		if radius < 0 {
			reach = &unbounded
			ix.unboundedRules = append(ix.unboundedRules, ri)
		}
		ix.reach = max(ix.reach, radius)
		if radius >= 0 {
			ix.reachBytes = max(ix.reachBytes, margin)
		}
		reach.Rules[id] = r
		for _, k := range r.Keywords {
			reach.Keywords[k] = struct{}{}
		}
	}
	ix.bounded = detect.NewDetectorContext(ctx, bounded)
	ix.unbounded = detect.NewDetectorContext(ctx, unbounded)
	ix.bounded.MaxDecodeDepth = gitleaksMaxDecodeDepth
	ix.unbounded.MaxDecodeDepth = gitleaksMaxDecodeDepth
	ix.trie = ahocorasick.NewTrieBuilder().AddStrings(keywords).Build()
	if len(keyless.Rules) > 0 {
		ix.keyless = detect.NewDetectorContext(ctx, keyless)
		for _, r := range keyless.Rules {
			ix.keylessReadText = ix.keylessReadText || r.Regex != nil
		}
	}
	return ix
}

func hasPaths(a *config.Allowlist) bool { return len(a.Paths) > 0 }

func notASCII(s string) bool {
	return strings.ContainsFunc(s, func(r rune) bool { return r >= utf8.RuneSelf })
}

// maxRadius is the largest newline bound treated as bounded; rules that
// can span more lines run over the whole text.
const maxRadius = 64

// newlineBound returns how many newlines a match of the regular expression
// expr can contain at most, or -1 when that is unbounded (or expr does not
// parse).
func newlineBound(expr string) int {
	re, err := syntax.Parse(expr, syntax.Perl)
	if err != nil {
		return -1
	}
	n := nlBound(re.Simplify())
	if n > maxRadius {
		return -1
	}
	return int(n)
}

// nlBound bounds the newlines re can match; math.MaxInt32 stands for
// unbounded.
func nlBound(re *syntax.Regexp) int64 {
	const inf = math.MaxInt32
	sat := func(n int64) int64 { return min(n, inf) }
	switch re.Op {
	case syntax.OpLiteral:
		return int64(strings.Count(string(re.Rune), "\n"))
	case syntax.OpAnyChar:
		return 1
	case syntax.OpCharClass:
		for i := 0; i+1 < len(re.Rune); i += 2 {
			if re.Rune[i] <= '\n' && '\n' <= re.Rune[i+1] {
				return 1
			}
		}
		return 0
	case syntax.OpCapture:
		return nlBound(re.Sub[0])
	case syntax.OpConcat:
		var n int64
		for _, s := range re.Sub {
			n = sat(n + nlBound(s))
		}
		return n
	case syntax.OpAlternate:
		var n int64
		for _, s := range re.Sub {
			n = max(n, nlBound(s))
		}
		return n
	case syntax.OpQuest:
		return nlBound(re.Sub[0])
	case syntax.OpStar, syntax.OpPlus:
		if nlBound(re.Sub[0]) > 0 {
			return inf
		}
		return 0
	case syntax.OpRepeat:
		n := nlBound(re.Sub[0])
		if n == 0 {
			return 0
		}
		if re.Max < 0 {
			return inf
		}
		return sat(n * int64(re.Max))
	case syntax.OpNoMatch, syntax.OpEmptyMatch, syntax.OpBeginLine, syntax.OpEndLine,
		syntax.OpBeginText, syntax.OpEndText, syntax.OpWordBoundary, syntax.OpNoWordBoundary,
		syntax.OpAnyCharNotNL:
		return 0
	}
	return inf // an operator this code does not know: assume the worst
}

// Byte bounds of regions (see the comment at the top).
const (
	// windowCap is the least margin of a rule, and the margin of a rule
	// whose matches are unbounded in length but not in lines.
	windowCap = 4 << 10
	// blockCap is the largest margin, and that of a rule whose matches are
	// unbounded in length and lines.
	blockCap = 32 << 10
	// pieceSize is the most bytes of a region cut from a long line handed
	// to gitleaks at once, not counting the overlap with its neighbours.
	pieceSize = 64 << 10
)

// ruleMargin returns the bytes either side of a keyword a rule sees on a
// long line, given the longest match of its expression in bytes and its
// newline bound (each -1 if unbounded).
func ruleMargin(longest, radius int) int {
	if longest < 0 {
		if radius < 0 {
			return blockCap
		}
		return windowCap
	}
	return min(max(longest+1, windowCap), blockCap)
}

// maxMatchLen returns how many bytes a match of the regular expression expr
// can be long at most, or -1 when that is unbounded (or expr does not
// parse).
func maxMatchLen(expr string) int {
	re, err := syntax.Parse(expr, syntax.Perl)
	if err != nil {
		return -1
	}
	n := lenBound(re.Simplify())
	if n >= math.MaxInt32 {
		return -1
	}
	return int(n)
}

// lenBound bounds the bytes re can match; math.MaxInt32 stands for
// unbounded.
func lenBound(re *syntax.Regexp) int64 {
	const inf = math.MaxInt32
	sat := func(n int64) int64 { return min(n, inf) }
	switch re.Op {
	case syntax.OpLiteral:
		var n int64
		for _, r := range re.Rune {
			n += int64(runeBytes(r, re.Flags&syntax.FoldCase != 0))
		}
		return n
	case syntax.OpAnyChar, syntax.OpAnyCharNotNL:
		return utf8.UTFMax
	case syntax.OpCharClass:
		if len(re.Rune) == 0 {
			return 0
		}
		return int64(runeBytes(re.Rune[len(re.Rune)-1], false)) // ranges are sorted
	case syntax.OpCapture, syntax.OpQuest:
		return lenBound(re.Sub[0])
	case syntax.OpConcat:
		var n int64
		for _, s := range re.Sub {
			n = sat(n + lenBound(s))
		}
		return n
	case syntax.OpAlternate:
		var n int64
		for _, s := range re.Sub {
			n = max(n, lenBound(s))
		}
		return n
	case syntax.OpStar, syntax.OpPlus:
		if lenBound(re.Sub[0]) > 0 {
			return inf
		}
		return 0
	case syntax.OpRepeat:
		n := lenBound(re.Sub[0])
		if n == 0 {
			return 0
		}
		if re.Max < 0 {
			return inf
		}
		return sat(n * int64(re.Max))
	case syntax.OpNoMatch, syntax.OpEmptyMatch, syntax.OpBeginLine, syntax.OpEndLine,
		syntax.OpBeginText, syntax.OpEndText, syntax.OpWordBoundary, syntax.OpNoWordBoundary:
		return 0
	}
	return inf // an operator this code does not know: assume the worst
}

// runeBytes returns the longest UTF-8 encoding of r, or of any rune it
// case-folds to when fold is set.
func runeBytes(r rune, fold bool) int {
	n := max(utf8.RuneLen(r), 1)
	if r > unicode.MaxRune {
		return utf8.UTFMax
	}
	if fold {
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			n = max(n, utf8.RuneLen(f))
		}
	}
	return n
}

// mark is the byte span [start, end) of a keyword occurrence or encoded
// segment (or of several close together on one line), on 0-based line
// line.
type mark struct{ line, start, end int }

// addMark appends m to marks, merging it into the last mark when both are
// on one line and less than margin bytes apart.
func addMark(marks []mark, m mark, margin int) []mark {
	if n := len(marks); n > 0 && marks[n-1].line == m.line && m.start <= marks[n-1].end+margin {
		marks[n-1].end = max(marks[n-1].end, m.end)
		return marks
	}
	return append(marks, m)
}

// hits runs every rule over the regions where it can match. ok is false
// when the text must be scanned whole instead (see the comment at the top).
func (ix *regionIndex) hits(ctx context.Context, rulePath, text string, fullLen int) (hits []credential.Hit, ok bool) {
	if text == "" || len(text) > math.MaxInt32 { // offsets below are int32
		return nil, false
	}
	if rulePath != "" && slices.ContainsFunc(ix.allowlists, func(a *config.Allowlist) bool { return a.PathAllowed(rulePath) }) {
		return nil, true
	}
	lines := lineStarts(text)
	lower, orig := lowerText(text)
	// marks[i] lists, in order, where rule i's keywords occur.
	marks := make(map[int][]mark)
	line := 0
	ix.trie.Walk(lower, func(end, n, pattern int64) bool {
		start, stop := int(end-n+1), int(end+1)
		if orig != nil {
			start, stop = int(orig[start]), min(int(orig[end])+utf8.UTFMax, len(text))
		}
		for line+1 < len(lines) && lines[line+1] <= start {
			line++
		}
		for _, ri := range ix.kwRules[pattern] {
			marks[ri] = addMark(marks[ri], mark{line, start, stop}, ix.rules[ri].margin)
		}
		return true
	})
	run := func(det *detect.Detector, w window, path string, margin int) {
		for _, p := range w.pieces(text, margin) {
			frag := text[p.from:p.to]
			//lint:ignore SA1019 DetectContext accepts only detect.Fragment; its replacement, sources.Fragment, is for v9.
			fs := det.DetectContext(ctx, detect.Fragment{Raw: frag, FilePath: path})
			got, lineBytes := convert(fs, frag, p.from, fullLen)
			ix.cost.add(frag, lineBytes)
			for _, h := range got {
				// A piece keeps the matches that start in its own part; the
				// others are its neighbours' (or cut short by its edge).
				if p.own[0] <= h.Start && h.Start < p.own[1] {
					hits = append(hits, h)
				}
			}
		}
	}
	for ri, kwMarks := range marks {
		r := &ix.rules[ri]
		if r.rule.Path != nil && !r.rule.Path.MatchString(rulePath) {
			continue // the rule would skip this file
		}
		path := ""
		if r.needsPath {
			path = rulePath
		}
		for _, w := range windows(kwMarks, r.radius, r.margin, lines, len(text)) {
			run(r.det, w, path, r.margin)
		}
	}
	switch {
	case ix.keyless == nil:
	case ix.keylessReadText:
		run(ix.keyless, window{to: len(text)}, rulePath, 0)
	default:
		// Rules of paths only (all the default rules' keyless rules) do
		// not read the text.
		//lint:ignore SA1019 as above
		fs := ix.keyless.DetectContext(ctx, detect.Fragment{FilePath: rulePath})
		got, _ := convert(fs, "", 0, fullLen)
		hits = append(hits, got...)
	}
	if segs := encodedMarks(text, lines); len(segs) > 0 {
		decodeWindows := windows(segs, ix.reach, ix.reachBytes, lines, len(text))
		for _, w := range decodeWindows {
			run(ix.bounded, w, rulePath, ix.reachBytes)
		}
		if ix.unboundedWoken(text, rulePath, marks, decodeWindows) {
			for _, w := range windows(segs, -1, blockCap, lines, len(text)) {
				run(ix.unbounded, w, rulePath, blockCap)
			}
		}
		hits = dedupHits(hits)
	}
	return dropShadowedGeneric(hits), true
}

// unboundedWoken reports whether a decoding run of the rules of unbounded
// reach could find anything in text: whether one of the rules that apply to
// the path has a keyword in the raw text (marks) or in the text as
// gitleaks' decoder decodes it, pass after pass. Every encoded segment lies
// in one of the windows, and decoding is local to a segment, so decoding
// the windows shows every keyword decoding can reveal.
func (ix *regionIndex) unboundedWoken(text, rulePath string, marks map[int][]mark, decodeWindows []window) bool {
	var keywords []string
	for _, ri := range ix.unboundedRules {
		r := &ix.rules[ri]
		if r.rule.Path != nil && !r.rule.Path.MatchString(rulePath) {
			continue
		}
		if len(marks[ri]) > 0 {
			return true
		}
		keywords = append(keywords, r.rule.Keywords...)
	}
	if len(keywords) == 0 {
		return false
	}
	for _, w := range decodeWindows {
		cur, dec := text[w.from:w.to], codec.NewDecoder()
		var segs []*codec.EncodedSegment
		for range gitleaksMaxDecodeDepth {
			if cur, segs = dec.Decode(cur, segs); len(segs) == 0 {
				break
			}
			lower := strings.ToLower(cur) // as gitleaks' prefilter sees it
			if slices.ContainsFunc(keywords, func(k string) bool { return strings.Contains(lower, k) }) {
				return true
			}
		}
	}
	return false
}

// dedupHits drops repeated hits (same rule and span), which the decoding
// runs produce for matches the plain runs found too.
func dedupHits(hits []credential.Hit) []credential.Hit {
	type key struct {
		rule       string
		start, end int
	}
	seen := make(map[key]bool, len(hits))
	return slices.DeleteFunc(hits, func(h credential.Hit) bool {
		k := key{h.Rule, h.Start, h.End}
		if seen[k] {
			return true
		}
		seen[k] = true
		return false
	})
}

// window is a region of text: the byte range [from, to). long says it cuts
// a line (a long one) rather than holding whole lines.
type window struct {
	from, to int
	long     bool
}

// windows returns the regions around marks (sorted) for a rule of newline
// bound radius (-1: unbounded) and byte margin: the lines within radius of
// each mark, less the whole lines more than margin bytes from it, and a
// line longer than twice the margin cut to margin bytes either side of the
// mark. Regions that overlap are merged, as are whole-line regions fewer
// than four lines apart. When whole-line regions would cover most of the
// text anyway, the whole text is one region.
func windows(marks []mark, radius, margin int, lines []int, size int) []window {
	if radius < 0 {
		radius = len(lines)
	}
	const gap = 4
	lineEnd := func(l int) int { // the offset just past line l
		if l+1 < len(lines) {
			return lines[l+1]
		}
		return size
	}
	var out []window
	var lastLine int // the line just past out's last region, if it is not long
	covered := 0
	for _, m := range marks {
		fl, tl := max(m.line-radius, 0), min(m.line+radius, len(lines)-1)
		// A mark on a long line (marks close together merge into one)
		// makes a long region even when it is not cut.
		w := window{from: lines[fl], to: lineEnd(tl), long: lineEnd(m.line)-lines[m.line] > 2*margin}
		if m.start-w.from > margin {
			l := lineIndex(lines, m.start-margin)
			if m.start-lines[l] <= 2*margin {
				w.from, fl = lines[l], l
			} else {
				w.from, w.long = m.start-margin, true
			}
		}
		if w.to-m.end > margin {
			l := lineIndex(lines, m.end+margin)
			if lineEnd(l)-m.end <= 2*margin {
				w.to, tl = lineEnd(l), l
			} else {
				w.to, w.long = m.end+margin, true
			}
		}
		if n := len(out); n > 0 {
			last := &out[n-1]
			if w.from <= last.to || !w.long && !last.long && fl <= lastLine+gap {
				covered += max(w.to-last.to, 0)
				last.to = max(last.to, w.to)
				last.long = last.long || w.long
				lastLine = tl + 1
				continue
			}
		}
		out = append(out, w)
		covered += w.to - w.from
		lastLine = tl + 1
	}
	if covered*2 > size && !slices.ContainsFunc(out, func(w window) bool { return w.long }) {
		return []window{{from: 0, to: size}}
	}
	return out
}

// lineIndex returns the 0-based line holding byte off.
func lineIndex(lines []int, off int) int {
	i, found := slices.BinarySearch(lines, off)
	if !found {
		i--
	}
	return max(i, 0)
}

// piece is a part of a region handed to gitleaks at once: the byte range
// [from, to), of which matches starting in own are kept.
type piece struct {
	from, to int
	own      [2]int
}

// pieces splits a long region into pieces of about pieceSize bytes (ending
// at a newline when one is near), each overlapping its neighbours by margin
// bytes. A region of whole lines is one piece.
func (w window) pieces(text string, margin int) []piece {
	if !w.long || w.to-w.from <= pieceSize {
		return []piece{{from: w.from, to: w.to, own: [2]int{w.from, w.to}}}
	}
	var out []piece
	for core := w.from; core < w.to; {
		end := min(core+pieceSize, w.to)
		if end < w.to {
			if i := strings.LastIndexByte(text[end-pieceSize/4:end], '\n'); i >= 0 {
				end = end - pieceSize/4 + i + 1
			}
		}
		out = append(out, piece{from: max(core-margin, w.from), to: min(end+margin, w.to), own: [2]int{core, end}})
		core = end
	}
	return out
}

// convert turns gitleaks findings on a window starting at byte off of the
// text into hits located in the text. lineBytes sums, over the findings, the
// length of the finding's line within the window.
func convert(fs []report.Finding, window string, off, fullLen int) (out []credential.Hit, lineBytes int) {
	var lines []int
	for i := range fs {
		if fs[i].Secret == "" {
			out = append(out, pathHit(&fs[i], fullLen))
			continue
		}
		if lines == nil {
			lines = lineStarts(window)
		}
		lineBytes += len(fs[i].Line)
		h := toHit(&fs[i], window, lines)
		h.Start += off
		h.End += off
		out = append(out, h)
	}
	return out, lineBytes
}

// dropShadowedGeneric removes generic-rule hits that a specific rule also
// found: the same judgement gitleaks makes within one run, needed here
// because each rule runs on its own.
func dropShadowedGeneric(hits []credential.Hit) []credential.Hit {
	isGeneric := func(h credential.Hit) bool { return strings.HasPrefix(h.Rule, "generic") }
	return slices.DeleteFunc(hits, func(h credential.Hit) bool {
		return isGeneric(h) && slices.ContainsFunc(hits, func(o credential.Hit) bool {
			return !isGeneric(o) && o.Start <= h.Start && h.End <= o.End
		})
	})
}

// lowerText lower-cases text for the keyword search. ASCII letters are
// lowered in place. KELVIN SIGN and LATIN CAPITAL LETTER I WITH DOT ABOVE,
// the only non-ASCII characters whose lower case (unicode.ToLower, as
// gitleaks uses through strings.ToLower) is ASCII, become 'k' and 'i'; when
// text holds one, orig maps each byte of lower to its offset in text,
// otherwise orig is nil and offsets are the same.
func lowerText(text string) (lower []byte, orig []int32) {
	if !strings.Contains(text, "\u212a") && !strings.Contains(text, "\u0130") {
		b := []byte(text)
		for i, c := range b {
			if 'A' <= c && c <= 'Z' {
				b[i] = c + 'a' - 'A'
			}
		}
		return b, nil
	}
	lower = make([]byte, 0, len(text))
	orig = make([]int32, 0, len(text))
	for i, r := range text {
		switch {
		case r == '\u212a':
			lower, orig = append(lower, 'k'), append(orig, int32(i))
		case r == '\u0130':
			lower, orig = append(lower, 'i'), append(orig, int32(i))
		case r < utf8.RuneSelf:
			lower, orig = append(lower, byte(unicode.ToLower(r))), append(orig, int32(i))
		default:
			// Other characters cannot be part of an ASCII keyword; keep
			// their bytes (or the bytes of an invalid sequence) as they are.
			n := len(string(r))
			if r == utf8.RuneError {
				_, n = utf8.DecodeRuneInString(text[i:])
			}
			for k := range n {
				lower, orig = append(lower, text[i+k]), append(orig, int32(i+k))
			}
		}
	}
	return lower, orig
}

// encodedLines returns the (sorted, 0-based) lines of text that may hold a
// segment gitleaks' decoder decodes (see encodedMarks).
func encodedLines(text string, lines []int) []int {
	var out []int
	for _, m := range encodedMarks(text, lines) {
		if len(out) == 0 || out[len(out)-1] != m.line {
			out = append(out, m.line)
		}
	}
	return out
}

// encodedMarks returns where text may hold a segment gitleaks' decoder
// decodes: percent escapes, unicode escapes (\uXXXX, U+XXXX), and base64
// or hex runs that decode to printable ASCII. It errs towards including a
// span.
func encodedMarks(text string, lines []int) []mark {
	var out []mark
	line := 0
	add := func(from, to int) {
		for line+1 < len(lines) && lines[line+1] <= from {
			line++
		}
		out = addMark(out, mark{line, from, to}, 0)
	}
	for i := 0; i < len(text); i++ {
		switch c := text[i]; {
		case c == '%' && i+2 < len(text) && isHex(text[i+1]) && isHex(text[i+2]):
			// Even an escape that does not decode matters: gitleaks' match
			// for it ends mid-line, and its next match (say, base64) starts
			// where no run boundary is.
			add(i, i+3)
		case c == '\\' && i+1 < len(text) && (text[i+1] == 'u' || text[i+1] == 'U'):
			add(i, min(i+10, len(text)))
		case isB64Run(c):
			j := i
			for j < len(text) && isB64Run(text[j]) {
				j++
			}
			if strings.Contains(text[i:j], "U+") || j-i >= 16 && decodable(text, i, j) {
				add(i, min(j+2, len(text))) // with any padding
			}
			i = j - 1
		}
	}
	return out
}

// decodable reports whether the run text[i:j] of base64 characters, or a
// hex run in it, decodes to printable ASCII as gitleaks' decoder requires.
func decodable(text string, i, j int) bool {
	end := j
	for end < len(text) && end < j+2 && text[end] == '=' {
		end++
	}
	if b64Printable(text[i:end]) || b64Printable(text[i:j]) {
		return true
	}
	// Hex runs of 32 or more, and what follows a leading one.
	for k := i; k < j; {
		if !isHex(text[k]) {
			k++
			continue
		}
		h := k
		for h < j && isHex(text[h]) {
			h++
		}
		if h-k >= 32 {
			if hexPrintable(text[k:h]) || (j-h >= 16 && b64Printable(text[h:end])) {
				return true
			}
		}
		k = h
	}
	return false
}

func b64Printable(s string) bool {
	if !strings.ContainsAny(s, "0123456789+/-_") {
		return false
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil && allPrintable(b) {
			return true
		}
	}
	return false
}

func hexPrintable(s string) bool {
	if len(s)%2 != 0 || !strings.ContainsAny(s, "0123456789") {
		return false // gitleaks decodes neither
	}
	for i := 0; i < len(s); i += 2 {
		if !printableByte(hexVal(s[i])<<4 | hexVal(s[i+1])) {
			return false
		}
	}
	return true
}

func allPrintable(b []byte) bool {
	return len(b) > 0 && !slices.ContainsFunc(b, func(c byte) bool { return !printableByte(c) })
}

// printableByte mirrors gitleaks' decoder: bytes from TAB to '~'.
func printableByte(c byte) bool { return c > 0x08 && c < 0x7f }

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func hexVal(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c >= 'a':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}

// isB64Run reports whether c can be part of what gitleaks' decoder takes
// for base64: word characters, '/', '+' and '-'.
func isB64Run(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '/' || c == '+' || c == '-'
}
