package scan

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/zricethezav/gitleaks/v8/regexp"

	"github.com/rs/zerolog"
	"github.com/spf13/viper"
	"github.com/zricethezav/gitleaks/v8/config"
	"github.com/zricethezav/gitleaks/v8/detect"
	"github.com/zricethezav/gitleaks/v8/logging"
	"github.com/zricethezav/gitleaks/v8/report"

	"github.com/signet-id/signet/internal/scan/credential"
)

// gitleaksMaxDecodeDepth matches the gitleaks CLI default: encoded
// (base64, hex, percent) text is decoded and rescanned up to five times.
const gitleaksMaxDecodeDepth = 5

// gitleaksChunk is the largest piece of content handed to gitleaks at once;
// its location code is linear in the lines of a piece per match.
const gitleaksChunk = 1 << 20

var defaultRules = sync.OnceValues(func() (config.Config, error) {
	// gitleaks logs secrets at trace level and writes its own messages to
	// os.Stderr; Signet reports problems itself.
	logging.Logger = zerolog.Nop()
	v := viper.New()
	v.SetConfigType("toml")
	if err := v.ReadConfig(strings.NewReader(config.DefaultConfig)); err != nil {
		return config.Config{}, fmt.Errorf("read gitleaks default config: %w", err)
	}
	var vc config.ViperConfig
	if err := v.Unmarshal(&vc); err != nil {
		return config.Config{}, fmt.Errorf("decode gitleaks default config: %w", err)
	}
	cfg, err := vc.Translate()
	if err != nil {
		return config.Config{}, fmt.Errorf("load gitleaks default config: %w", err)
	}
	if cfg.Allowlists, err = withoutExtensions(cfg.Allowlists); err != nil {
		return config.Config{}, fmt.Errorf("load gitleaks default config: %w", err)
	}
	return cfg, nil
})

// binaryNames are file names that gitleaks' global allowlist exempts for
// their extension, as binary formats (images, fonts, documents, executables).
var binaryNames = []string{"a/x.png", "a/x.svg", "a/x.woff2", "a/x.ttf", "a/x.pdf", "a/x.docx", "a/x.bin", "a/x.exe", "a/x.dll"}

// withoutExtensions returns copies of allowlists without the path patterns
// that exempt files by a binary format's extension: Signet tells binary
// files by their content, so a text file named x.bin is scanned and a real
// image is skipped as binary.
func withoutExtensions(allowlists []*config.Allowlist) ([]*config.Allowlist, error) {
	out := make([]*config.Allowlist, 0, len(allowlists))
	for _, a := range allowlists {
		c := &config.Allowlist{
			Description:    a.Description,
			MatchCondition: a.MatchCondition,
			Commits:        a.Commits,
			Paths: slices.DeleteFunc(slices.Clone(a.Paths), func(re *regexp.Regexp) bool {
				return slices.ContainsFunc(binaryNames, re.MatchString)
			}),
			RegexTarget: a.RegexTarget,
			Regexes:     a.Regexes,
			StopWords:   a.StopWords,
		}
		if len(c.Commits)+len(c.Paths)+len(c.Regexes)+len(c.StopWords) == 0 {
			continue // an allowlist of binary extensions only
		}
		if err := c.Validate(); err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

// rules wraps a gitleaks detector loaded with the default (maintained) rule
// set. Its methods are safe for concurrent use.
type rules struct {
	cfg     config.Config
	det     *detect.Detector // all rules, for whole-text scans
	regions *regionIndex
}

func newRules(ctx context.Context) (*rules, error) {
	cfg, err := defaultRules()
	if err != nil {
		return nil, err
	}
	det := detect.NewDetectorContext(ctx, cfg)
	det.MaxDecodeDepth = gitleaksMaxDecodeDepth
	return &rules{cfg: cfg, det: det, regions: newRegionIndex(ctx, cfg)}, nil
}

// pathAllowed reports whether gitleaks' global allowlist exempts a path
// (images, lock files, vendored dependencies, .git, ...).
func (r *rules) pathAllowed(path string) bool {
	for _, a := range r.cfg.Allowlists {
		if a.PathAllowed(path) {
			return true
		}
	}
	return false
}

// hits runs the gitleaks rules on text, whose rule-visible path is
// rulePath ("" for content that is not a file), and returns their matches
// as credential hits located by byte span in text. A path-only rule's hit
// spans [0, fullLen) with a nil Value: the whole content, which for a
// binary file is not text. gitleaks' findings carry the secret in three
// fields; they are converted here and cleared, and no report.Finding leaves
// this function.
func (r *rules) hits(ctx context.Context, rulePath, text string, fullLen int) []credential.Hit {
	if hits, ok := r.regions.hits(ctx, rulePath, text, fullLen); ok {
		return hits
	}
	return r.wholeHits(ctx, rulePath, text, fullLen)
}

// wholeHits is hits by running all rules over the whole text (in chunks of
// at most gitleaksChunk bytes), exactly as gitleaks does.
func (r *rules) wholeHits(ctx context.Context, rulePath, text string, fullLen int) []credential.Hit {
	var out []credential.Hit
	pathRules := map[string]bool{}
	for off := 0; ; {
		end := chunkEnd(text, off, gitleaksChunk)
		chunk := text[off:end]
		//lint:ignore SA1019 DetectContext accepts only detect.Fragment; its replacement, sources.Fragment, is for v9.
		fs := r.det.DetectContext(ctx, detect.Fragment{Raw: chunk, FilePath: rulePath})
		var lines []int
		for i := range fs {
			if fs[i].Secret == "" {
				if !pathRules[fs[i].RuleID] {
					pathRules[fs[i].RuleID] = true
					out = append(out, pathHit(&fs[i], fullLen))
				}
				continue
			}
			if lines == nil {
				lines = lineStarts(chunk)
			}
			h := toHit(&fs[i], chunk, lines)
			h.Start += off
			h.End += off
			out = append(out, h)
		}
		if end >= len(text) {
			// gitleaks reports a match again when a decoding pass finds it.
			return dedupHits(out)
		}
		off = end
	}
}

// pathHit converts a gitleaks finding of a path-only rule (a .p12 file, say)
// and clears its secret-bearing fields.
func pathHit(f *report.Finding, fullLen int) credential.Hit {
	h := credential.Hit{
		Rule:        f.RuleID,
		Description: f.Description,
		Kind:        kindForRule(f.RuleID),
		Severity:    severityForRule(f.RuleID),
		End:         fullLen,
		Preview:     "(whole file)",
	}
	f.Secret, f.Match, f.Line, f.Fragment = "", "", "", nil
	return h
}

// chunkEnd returns where the chunk of text starting at off ends: at most
// size bytes on, just after a blank line or else a newline when there is
// one in the chunk's last quarter.
func chunkEnd(text string, off, size int) int {
	if len(text)-off <= size {
		return len(text)
	}
	end := off + size
	window := text[end-size/4 : end]
	if i := strings.LastIndex(window, "\n\n"); i >= 0 {
		return end - size/4 + i + 2
	}
	if i := strings.LastIndexByte(window, '\n'); i >= 0 {
		return end - size/4 + i + 1
	}
	return end
}

// lineStarts returns the byte offset of each line of text.
func lineStarts(text string) []int {
	starts := []int{0}
	for i := 0; ; {
		j := strings.IndexByte(text[i:], '\n')
		if j < 0 {
			return starts
		}
		i += j + 1
		starts = append(starts, i)
	}
}

// toHit converts a gitleaks finding on chunk (scanned with StartLine 0, so
// its lines are 0-based indexes into lines) and clears the finding's
// secret-bearing fields.
func toHit(f *report.Finding, chunk string, lines []int) credential.Hit {
	h := credential.Hit{
		Rule:        f.RuleID,
		Description: f.Description,
		Kind:        kindForRule(f.RuleID),
		Severity:    severityForRule(f.RuleID),
	}
	line := min(max(f.StartLine, 0), len(lines)-1)
	endLine := min(max(f.EndLine, line), len(lines)-1)
	lineEnd := len(chunk)
	if endLine+1 < len(lines) {
		lineEnd = lines[endLine+1]
	}
	{
		h.Value = credential.Secret(f.Secret)
		h.Preview = credential.Preview(f.Secret)
		// gitleaks locates the match, not the secret within it: find the
		// secret from the match's first line on.
		from := lines[line]
		if i := strings.Index(chunk[from:min(len(chunk), lineEnd+len(f.Secret))], f.Secret); i >= 0 {
			h.Start, h.End = from+i, from+i+len(f.Secret)
		} else if s, e := decodedSpan(f, lines, len(chunk)); s < e {
			// Found only after decoding (base64 and the like): gitleaks
			// locates the encoded text.
			h.Start, h.End = s, e
		} else {
			h.Start, h.End = from, max(lineEnd-1, from)
		}
	}
	f.Secret, f.Match, f.Line, f.Fragment = "", "", "", nil
	return h
}

// decodedSpan returns the byte span of chunk that gitleaks' line and column
// numbers give for f. gitleaks counts a column from the newline before the
// line (from the text's start on line 0), so columns past line 0 are one
// more than the offset in the line.
func decodedSpan(f *report.Finding, lines []int, size int) (start, end int) {
	if f.StartLine < 0 || f.StartLine > f.EndLine || f.EndLine >= len(lines) {
		return 0, 0
	}
	base := func(l int) int {
		if l == 0 {
			return 0
		}
		return lines[l] - 1
	}
	start = base(f.StartLine) + f.StartColumn - 1
	end = base(f.EndLine) + f.EndColumn
	if start < 0 || end > size {
		return 0, 0
	}
	return start, end
}

// kindForRule classifies a gitleaks rule by its identifier.
func kindForRule(id string) credential.Kind {
	switch {
	case strings.Contains(id, "private-key"), strings.Contains(id, "pkcs12"):
		return credential.KindPrivateKey
	case strings.HasPrefix(id, "jwt"):
		return credential.KindJWT
	case id == "generic-api-key":
		return credential.KindGeneric
	case strings.HasPrefix(id, "aws-"), strings.HasPrefix(id, "gcp-"), strings.HasPrefix(id, "azure-"),
		strings.HasPrefix(id, "alibaba-"), strings.HasPrefix(id, "yandex-"):
		return credential.KindCloudCredential
	case strings.Contains(id, "password"):
		return credential.KindPassword
	case strings.Contains(id, "key"):
		return credential.KindAPIKey
	}
	return credential.KindToken
}

// severityForRule rates a gitleaks rule: its generic rule is medium, the
// provider-specific ones high.
func severityForRule(id string) credential.Severity {
	if strings.HasPrefix(id, "generic") {
		return credential.SeverityMedium
	}
	return credential.SeverityHigh
}
