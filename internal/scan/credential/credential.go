// Package credential recognises static credentials in the formats that
// generic secret rules miss or misjudge: PEM and OpenSSH private keys
// (telling encrypted from unencrypted ones), long-lived JWTs, kubeconfigs,
// .pgpass, .netrc and .git-credentials files, Docker config.json, AWS, GCP
// and Azure credential files, CI configuration holding literal secrets, and
// secret-looking environment variables.
//
// Passphrase-protected private keys are reported too, as their own kind
// with low severity (see encrypted.go).
//
// Each format is parsed, not pattern-matched: a kubeconfig is decoded as
// YAML, a JWT's payload as JSON, a key's PEM block with encoding/pem. The
// parsers take untrusted input and never panic on it.
//
// Detect returns Hits. A Hit locates a secret by its byte span in the scanned
// content and carries the secret's canonical value as a Secret, a byte slice
// that refuses to print itself. A Hit with Dismiss set is a verdict that the
// span is NOT a credential (a short-lived JWT, a placeholder password, an
// AWS key ID whose secret is reported); callers use it to veto other detectors' matches on
// the same span.
package credential

import (
	"bytes"
	"fmt"
	"iter"
	"log/slog"
	"path"
	"strings"
	"unicode/utf8"
)

// Kind is the coarse class of a credential. Its values are stable strings
// used in reports and inventories.
type Kind string

// The kinds of credential a Hit can carry.
const (
	KindPrivateKey Kind = "private-key"
	// KindEncryptedPrivateKey is a passphrase-protected private key: still
	// a long-lived credential, whose passphrase lives somewhere.
	KindEncryptedPrivateKey Kind = "encrypted-private-key"
	KindPassword            Kind = "password"
	KindToken               Kind = "token"
	KindAPIKey              Kind = "api-key"
	KindJWT                 Kind = "jwt"
	KindCloudCredential     Kind = "cloud-credential"
	KindGeneric             Kind = "generic-secret"
)

// Severity ranks how urgently a credential should be rotated. The zero
// value is the empty string, which ranks below SeverityLow.
type Severity string

// The severities, from least to most urgent.
const (
	SeverityLow      Severity = "low"
	SeverityMedium   Severity = "medium"
	SeverityHigh     Severity = "high"
	SeverityCritical Severity = "critical"
)

// Rank orders severities: 0 for unknown, 1 for low up to 4 for critical.
func (s Severity) Rank() int {
	switch s {
	case SeverityLow:
		return 1
	case SeverityMedium:
		return 2
	case SeverityHigh:
		return 3
	case SeverityCritical:
		return 4
	}
	return 0
}

// Secret is a credential's value. It never formats, logs or marshals its
// content: every rendering is the fixed string "[REDACTED]". Convert it to a
// string or []byte explicitly to use the value.
type Secret []byte

const redacted = "[REDACTED]"

// String returns "[REDACTED]".
func (Secret) String() string { return redacted }

// GoString returns "[REDACTED]".
func (Secret) GoString() string { return redacted }

// Format writes "[REDACTED]" for every verb.
func (Secret) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(redacted)) }

// LogValue redacts the secret in slog output.
func (Secret) LogValue() slog.Value { return slog.StringValue(redacted) }

// MarshalText returns "[REDACTED]", so encoders never see the value.
func (Secret) MarshalText() ([]byte, error) { return []byte(redacted), nil }

// Hit is one credential (or, with Dismiss, one verdict of non-credential)
// found in a piece of content. Start and End are byte offsets of the
// secret's text in that content, End exclusive.
type Hit struct {
	Rule        string // stable rule identifier, e.g. "pem-private-key"
	Description string
	Kind        Kind
	Severity    Severity
	Start, End  int
	// Value is the canonical secret fingerprinted by callers: for private
	// keys their PKCS#8 DER encoding, for escaped or encoded values the
	// decoded text. Nil means the content's bytes in [Start, End).
	Value Secret
	// Preview, when set, is the display form of the secret (see Preview);
	// empty means Preview of the content's bytes in [Start, End).
	Preview string
	// Dismiss marks the span as judged not to be a usable credential; the
	// Hit is not a finding and only suppresses other matches on the span.
	Dismiss bool
	// Details holds non-secret facts about the credential (a certificate's
	// validity, a JWT's lifetime, the registry or host it is for).
	Details map[string]string
	// Priority breaks ties between overlapping hits of equal severity;
	// format-specific detectors rank above generic ones. Hits from this
	// package always have a positive priority.
	Priority int
	// NameOnly marks a hit judged only by the name of the variable holding
	// it (env-secret, ci-literal-secret): a rule that recognises the value
	// itself (a GitHub token, say) describes the same secret better.
	NameOnly bool
}

// LogValue renders a Hit for slog without its value.
func (h Hit) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("rule", h.Rule),
		slog.Int("start", h.Start),
		slog.Int("end", h.End),
		slog.Bool("dismiss", h.Dismiss),
	)
}

// Format renders a Hit for fmt without its value.
func (h Hit) Format(f fmt.State, _ rune) {
	fmt.Fprintf(f, "Hit{%s [%d,%d) dismiss=%t}", h.Rule, h.Start, h.End, h.Dismiss)
}

// Preview renders a secret for display without revealing it: at most its
// first four characters and never more than a quarter of them, then "…" and
// its length in characters, e.g. "ghp_…(40)". For PEM text the armor lines
// are dropped first, so a key previews as the start of its base64 body.
// Non-printable characters show as '?'.
func Preview(text string) string {
	if i := strings.Index(text, "-----BEGIN"); i >= 0 {
		text = pemBody(text[i:])
	}
	r := []rune(text)
	k := min(4, len(r)/4)
	var b strings.Builder
	for _, c := range r[:k] {
		if c < 0x20 || c == 0x7f || !utf8.ValidRune(c) || c == utf8.RuneError {
			c = '?'
		}
		b.WriteRune(c)
	}
	fmt.Fprintf(&b, "…(%d)", len(r))
	return b.String()
}

// pemBody strips PEM armor, headers and whitespace (real or JSON-escaped
// newlines) from text starting at "-----BEGIN".
func pemBody(text string) string {
	text = strings.ReplaceAll(text, `\n`, "\n")
	_, rest, ok := strings.Cut(text[len("-----BEGIN"):], "-----")
	if !ok {
		return text
	}
	rest, _, _ = strings.Cut(rest, "-----END")
	var b strings.Builder
	for _, line := range strings.Split(rest, "\n") {
		if strings.Contains(line, ":") { // Proc-Type and other headers
			continue
		}
		b.WriteString(strings.Join(strings.Fields(line), ""))
	}
	return b.String()
}

// Overlaps reports whether the byte spans of h and o intersect.
func (h Hit) Overlaps(o Hit) bool {
	return h.Start < o.End && o.Start < h.End
}

// priorities for overlapping hits of equal severity: structured files win
// over the generic PEM and JWT recognisers.
const (
	priorityGeneric    = 10
	priorityStructured = 20
)

// maxStructuredSize bounds the files parsed as YAML, JSON or line formats;
// credential files are small, and this keeps a hostile multi-megabyte YAML
// document from dominating a scan.
const maxStructuredSize = 4 << 20

// Detect runs every applicable recogniser on content, whose file name is
// name (slash-separated; may be empty for content that is not a file). It
// returns the hits in no particular order; hits may overlap.
func Detect(name string, content []byte) []Hit {
	hits := DetectPart(content)
	if len(content) > maxStructuredSize {
		return hits
	}
	base := path.Base(name)
	lower := strings.ToLower(base)
	switch {
	case lower == ".pgpass" || lower == "pgpass.conf":
		hits = append(hits, DetectPgpass(content)...)
	case lower == ".netrc" || lower == "_netrc":
		hits = append(hits, DetectNetrc(content)...)
	case lower == ".git-credentials" || (lower == "credentials" && path.Base(path.Dir(name)) == "git"):
		hits = append(hits, DetectGitCredentials(content)...)
	}
	if bytes.Contains(content, []byte("aws_secret_access_key")) {
		hits = append(hits, DetectAWSCredentials(content)...)
	}
	if isYAMLName(lower) || lower == "config" || lower == "kubeconfig" || strings.HasSuffix(lower, ".kubeconfig") {
		if IsCIConfig(name) {
			hits = append(hits, DetectCIConfig(name, content)...)
		} else if bytes.Contains(content, []byte("users:")) {
			hits = append(hits, DetectKubeconfig(content)...)
		}
	}
	if looksLikeJSONCredentials(lower, content) {
		hits = append(hits, DetectJSONCredentials(base, content)...)
	}
	return hits
}

// DetectPart runs the recognisers that need no whole file — private keys
// and JWTs — on content that may be one part of a larger file (or a file
// too large for the structured formats). It returns the hits in no
// particular order; hits may overlap.
func DetectPart(content []byte) []Hit {
	var hits []Hit
	if bytes.Contains(content, []byte("-----BEGIN ")) {
		hits = append(hits, DetectPEM(content)...)
	}
	if bytes.Contains(content, []byte("eyJ")) {
		hits = append(hits, DetectJWTs(content)...)
	}
	return hits
}

func isYAMLName(lower string) bool {
	return strings.HasSuffix(lower, ".yaml") || strings.HasSuffix(lower, ".yml")
}

// lines yields each line of content with its byte offset, without the
// trailing newline (a final line without one is yielded too).
func lines(content []byte) iter.Seq2[int, []byte] {
	return func(yield func(int, []byte) bool) {
		for off := 0; off < len(content); {
			end := bytes.IndexByte(content[off:], '\n')
			if end < 0 {
				end = len(content)
			} else {
				end += off
			}
			if !yield(off, content[off:end]) {
				return
			}
			off = end + 1
		}
	}
}
