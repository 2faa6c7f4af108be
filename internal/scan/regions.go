package scan

import (
	"context"
	"encoding/base64"
	"math"
	"regexp/syntax"
	"slices"
	"strings"
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
	// every text; nil if there are none.
	keyless *detect.Detector
	// bounded and unbounded hold the rules of bounded and unbounded
	// newline reach, decoding as gitleaks does; reach is the largest bound.
	bounded, unbounded *detect.Detector
	reach              int
	// unboundedRules indexes the rules of unbounded reach in rules.
	unboundedRules []int
	// allowlists are gitleaks' global allowlists, checked here once per
	// text rather than by every per-rule run.
	allowlists []*config.Allowlist
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
		radius := -1
		if r.Regex != nil {
			radius = newlineBound(r.Regex.String())
		}
		ix.rules = append(ix.rules, windowedRule{
			id: id, det: detect.NewDetectorContext(ctx, one), radius: radius, rule: r,
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

// hits runs every rule over the lines where it can match. ok is false when
// the text must be scanned whole instead (see the comment at the top).
func (ix *regionIndex) hits(ctx context.Context, rulePath, text string, fullLen int) (hits []credential.Hit, ok bool) {
	if text == "" || len(text) > math.MaxInt32 { // offsets below are int32
		return nil, false
	}
	if rulePath != "" && slices.ContainsFunc(ix.allowlists, func(a *config.Allowlist) bool { return a.PathAllowed(rulePath) }) {
		return nil, true
	}
	lines := lineStarts(text)
	lower, orig := lowerText(text)
	// marks[i] lists, in order, the lines where rule i's keywords occur.
	marks := make(map[int][]int)
	line := 0
	ix.trie.Walk(lower, func(end, n, pattern int64) bool {
		start := int(end - n + 1)
		if orig != nil {
			start = int(orig[start])
		}
		for line+1 < len(lines) && lines[line+1] <= start {
			line++
		}
		for _, ri := range ix.kwRules[pattern] {
			if m := marks[ri]; len(m) == 0 || m[len(m)-1] != line {
				marks[ri] = append(m, line)
			}
		}
		return true
	})
	run := func(det *detect.Detector, w [2]int, path string) {
		//lint:ignore SA1019 DetectContext accepts only detect.Fragment; its replacement, sources.Fragment, is for v9.
		fs := det.DetectContext(ctx, detect.Fragment{Raw: text[w[0]:w[1]], FilePath: path})
		hits = append(hits, convert(fs, text[w[0]:w[1]], w[0], fullLen)...)
	}
	for ri, kwLines := range marks {
		r := &ix.rules[ri]
		if r.rule.Path != nil && !r.rule.Path.MatchString(rulePath) {
			continue // the rule would skip this file
		}
		path := ""
		if r.needsPath {
			path = rulePath
		}
		for _, w := range windows(kwLines, r.radius, lines, len(text)) {
			run(r.det, w, path)
		}
	}
	whole := [2]int{0, len(text)}
	if ix.keyless != nil {
		run(ix.keyless, whole, rulePath)
	}
	if segs := encodedLines(text, lines); len(segs) > 0 {
		decodeWindows := windows(segs, ix.reach, lines, len(text))
		for _, w := range decodeWindows {
			run(ix.bounded, w, rulePath)
		}
		if ix.unboundedWoken(text, rulePath, marks, decodeWindows) {
			run(ix.unbounded, whole, rulePath)
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
func (ix *regionIndex) unboundedWoken(text, rulePath string, marks map[int][]int, decodeWindows [][2]int) bool {
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
		cur, dec := text[w[0]:w[1]], codec.NewDecoder()
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

// windows returns the byte ranges of the lines within radius of kwLines
// (sorted line numbers), merging ranges fewer than four lines apart. A rule
// of unbounded radius, or one whose windows would cover most of the text
// anyway, gets the whole text as one window.
func windows(kwLines []int, radius int, lines []int, size int) [][2]int {
	if radius < 0 {
		return [][2]int{{0, size}}
	}
	const gap = 4
	var spans [][2]int // line ranges [from, to)
	for _, l := range kwLines {
		from, to := max(l-radius, 0), min(l+radius+1, len(lines))
		if n := len(spans); n > 0 && from <= spans[n-1][1]+gap {
			spans[n-1][1] = max(spans[n-1][1], to)
			continue
		}
		spans = append(spans, [2]int{from, to})
	}
	out := make([][2]int, len(spans))
	covered := 0
	for i, sp := range spans {
		end := size
		if sp[1] < len(lines) {
			end = lines[sp[1]]
		}
		out[i] = [2]int{lines[sp[0]], end}
		covered += end - lines[sp[0]]
	}
	if covered*2 > size {
		return [][2]int{{0, size}}
	}
	return out
}

// convert turns gitleaks findings on a window starting at byte off of the
// text into hits located in the text.
func convert(fs []report.Finding, window string, off, fullLen int) []credential.Hit {
	var out []credential.Hit
	var lines []int
	for i := range fs {
		if fs[i].Secret == "" {
			out = append(out, pathHit(&fs[i], fullLen))
			continue
		}
		if lines == nil {
			lines = lineStarts(window)
		}
		h := toHit(&fs[i], window, lines)
		h.Start += off
		h.End += off
		out = append(out, h)
	}
	return out
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
// segment gitleaks' decoder decodes: percent escapes, unicode escapes
// (\uXXXX, U+XXXX), and base64 or hex runs that decode to printable ASCII.
// It errs towards including a line.
func encodedLines(text string, lines []int) []int {
	var out []int
	line := 0
	mark := func(off int) {
		for line+1 < len(lines) && lines[line+1] <= off {
			line++
		}
		if len(out) == 0 || out[len(out)-1] != line {
			out = append(out, line)
		}
	}
	for i := 0; i < len(text); i++ {
		switch c := text[i]; {
		case c == '%' && i+2 < len(text) && isHex(text[i+1]) && isHex(text[i+2]):
			// Even an escape that does not decode matters: gitleaks' match
			// for it ends mid-line, and its next match (say, base64) starts
			// where no run boundary is.
			mark(i)
		case c == '\\' && i+1 < len(text) && (text[i+1] == 'u' || text[i+1] == 'U'):
			mark(i)
		case isB64Run(c):
			j := i
			for j < len(text) && isB64Run(text[j]) {
				j++
			}
			if strings.Contains(text[i:j], "U+") || j-i >= 16 && decodable(text, i, j) {
				mark(i)
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
