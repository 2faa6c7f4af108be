package scan

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	cryptorand "crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/signet-id/signet/internal/scan/credential"
	"github.com/signet-id/signet/internal/scan/scantest"
)

func TestNewlineBound(t *testing.T) {
	tests := map[string]int{
		`abc`:                0,
		`a\nb\n`:             2,
		`a[\s]{0,3}b`:        3,
		`a\s*b`:              -1,
		`(?s)a.{0,10}b`:      10,
		`a.{0,10}b`:          0,
		`(?:x|\n\n)[^a]?`:    3,
		`[\x60'"\s=]{0,5}`:   5,
		`(?m)^a$`:            0,
		`(`:                  -1,
		`[\s\S]{64,}?KEY---`: -1,
		`\s{0,100}`:          -1, // beyond maxRadius
	}
	for expr, want := range tests {
		if got := newlineBound(expr); got != want {
			t.Errorf("newlineBound(%q) = %d, want %d", expr, got, want)
		}
	}
}

// adversarialText builds text that puts gitleaks keywords, operators,
// line breaks and high-entropy values next to each other in many ways.
func adversarialText(rnd *rand.Rand, keywords []string) string {
	ops := []string{"=", ": ", " = ", ":=", " => ", "\n", ":\n\n  ", "=\"", ": '", " "}
	prefixes := []string{"", "", "", "ghp_", "xoxb-1234567890-1234567890-", "AKIA", "sk_live_", "glpat-", "eyJ"}
	var b strings.Builder
	for range 20 + rnd.IntN(40) {
		switch rnd.IntN(6) {
		case 0:
			b.WriteString("\n")
		case 1:
			b.WriteString(strings.Repeat(" ", rnd.IntN(6)) + "plain words here\n")
		default:
			kw := keywords[rnd.IntN(len(keywords))]
			if rnd.IntN(2) == 0 {
				kw = strings.ToUpper(kw)
			}
			line := "my_" + kw + ops[rnd.IntN(len(ops))] + prefixes[rnd.IntN(len(prefixes))] +
				scantest.Token("", 10+rnd.IntN(40), rnd.Uint64())
			switch rnd.IntN(12) { // sometimes encoded, as gitleaks decodes
			case 0:
				line = "data: " + base64.StdEncoding.EncodeToString([]byte(line))
			case 1:
				line = "hex " + hex.EncodeToString([]byte(line))
			case 2:
				line = url.QueryEscape(line)
			case 3:
				line = strings.ReplaceAll(line, "_", `\u005f`)
			}
			b.WriteString(line)
			b.WriteString([]string{"\n", "\"\n", "'\n", " ", ";\n"}[rnd.IntN(5)])
		}
	}
	return b.String()
}

// TestRegionsMatchWholeScan checks that region scanning finds exactly what
// running every rule over the whole text finds.
func TestRegionsMatchWholeScan(t *testing.T) {
	r, err := newRules(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var keywords []string
	for k := range r.cfg.Keywords {
		keywords = append(keywords, k)
	}
	slices.Sort(keywords)
	texts := map[string]string{}
	rnd := rand.New(rand.NewPCG(1, 2))
	for i := range 30 {
		texts[fmt.Sprintf("adversarial-%d.txt", i)] = adversarialText(rnd, keywords)
	}
	for i := range 4 { // characters gitleaks lower-cases to ASCII
		text := adversarialText(rnd, keywords)
		text = strings.ReplaceAll(text, "K", "\u212a")
		text = strings.ReplaceAll(text, "I", "\u0130")
		texts[fmt.Sprintf("unicode-%d.txt", i)] = "caf\xc3\xa9 \xff\xfe " + text
	}
	// Rules of unbounded reach that only decoding wakes.
	ec, err := ecdsa.GenerateKey(elliptic.P256(), cryptorand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalECPrivateKey(ec)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})
	texts["tls-secret.txt"] = "apiVersion: v1\nstringData:\n  tls.key: " + base64.StdEncoding.EncodeToString(keyPEM) + "\n"
	curl := "curl -u deploy:" + scantest.Token("", 20, 99) + " https://x.example"
	texts["curl.txt"] = "run: " + strings.NewReplacer(" ", "%20", ":", "%3A", "u", "%75").Replace(curl) + "\n"
	fx := scantest.New(t)
	err = filepath.WalkDir(fx.Root, func(p string, d os.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() || strings.Contains(p, "/.git/") {
			return err
		}
		b, err := os.ReadFile(p)
		texts[filepath.ToSlash(p)] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	key := func(hs []credential.Hit) []string {
		var out []string
		for _, h := range hs {
			out = append(out, fmt.Sprintf("%s@%d-%d", h.Rule, h.Start, h.End))
		}
		slices.Sort(out)
		return out
	}
	var windowed, found int
	for name, text := range texts {
		got, ok := r.regions.hits(context.Background(), name, text, len(text))
		if !ok {
			continue
		}
		windowed++
		want := key(dropShadowedGeneric(r.wholeHits(context.Background(), name, text, len(text))))
		found += len(want)
		if diff := slices.Compare(want, key(got)); diff != 0 {
			t.Errorf("%s: region scan found %v, whole scan %v", name, key(got), want)
		}
	}
	for _, name := range []string{"tls-secret.txt", "curl.txt"} {
		text := texts[name]
		if hs := r.wholeHits(context.Background(), name, text, len(text)); len(hs) == 0 {
			t.Errorf("%s: gitleaks finds nothing; the case tests nothing", name)
		}
	}
	if windowed < len(texts) || found < 100 {
		t.Errorf("only %d of %d texts region-scanned with %d hits; the test is too weak", windowed, len(texts), found)
	}
}

// TestLowerText checks that lowerText knows every non-ASCII character
// whose lower case is ASCII.
func TestLowerText(t *testing.T) {
	for r := rune(utf8.RuneSelf); r <= unicode.MaxRune; r++ {
		if l := unicode.ToLower(r); l < utf8.RuneSelf {
			lower, orig := lowerText("a" + string(r) + "b")
			want := "a" + string(l) + "b"
			if string(lower) != want || len(orig) != 3 || int(orig[2]) != 1+len(string(r)) {
				t.Errorf("lowerText(%U) = %q %v, want %q", r, lower, orig, want)
			}
		}
	}
	lower, orig := lowerText("KEY caf\u00e9 \xff")
	if string(lower) != "key caf\u00e9 \xff" || orig != nil {
		t.Errorf("lowerText(ASCII and other) = %q, %v", lower, orig)
	}
}

func TestEncodedLines(t *testing.T) {
	tests := map[string]bool{
		"plain text with identifiers like compressedBufferLength":                false,
		"token = " + "dGhpcyBpcyBhIHNlY3JldCB0b2tlbg==":                          true,  // base64 of printable text
		"blob = 3q2+7wAAAAAAAAAAAAAAAAAAAAAAAAAA":                                false, // base64 of binary
		"url = https://x/?q=a%20b":                                               true,
		"fmt.Sprintf(\"%02x\", b)":                                               true, // "%02" is an escape to gitleaks
		"fmt.Sprintf(\"%d items\", n)":                                           false,
		`"name": "caf\u00e9"`:                                                    true,
		"see U+FFFD":                                                             true,
		"hex = 68656c6c6f20776f726c6420686578206973206865726521":                 true,
		"sha = 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08": false,
	}
	for text, want := range tests {
		text = "first line\n" + text + "\nlast line\n"
		got := encodedLines(text, lineStarts(text))
		if want && !slices.Equal(got, []int{1}) || !want && len(got) != 0 {
			t.Errorf("encodedLines(%q) = %v, want line 1: %t", text, got, want)
		}
	}
}

// FuzzRegionsMatchWholeScan is the differential form of
// TestRegionsMatchWholeScan: on any text, region scanning must find what
// whole-text scanning finds.
func FuzzRegionsMatchWholeScan(f *testing.F) {
	r, err := newRules(context.Background())
	if err != nil {
		f.Fatal(err)
	}
	f.Add("password = \"" + scantest.Token("", 24, 1) + "\"\n")
	f.Add("x: " + base64.StdEncoding.EncodeToString([]byte("token: "+scantest.Token("ghp_", 36, 2))) + "\n")
	f.Add("a%20b \\u0041 U+0041 \u212aEY=" + scantest.Token("", 30, 3))
	f.Fuzz(func(t *testing.T, text string) {
		got, ok := r.regions.hits(context.Background(), "f.txt", text, len(text))
		if !ok {
			return
		}
		key := func(hs []credential.Hit) []string {
			var out []string
			for _, h := range hs {
				out = append(out, fmt.Sprintf("%s@%d-%d", h.Rule, h.Start, h.End))
			}
			slices.Sort(out)
			return out
		}
		want := key(dropShadowedGeneric(r.wholeHits(context.Background(), "f.txt", text, len(text))))
		if !slices.Equal(want, key(got)) {
			t.Fatalf("region scan found %v, whole scan %v", key(got), want)
		}
	})
}

// TestLongLineBounded checks that a text that is one long line is scanned
// in regions of bounded lines whose total is linear in its size, and that a
// secret in its middle is still found. It counts work, not time: gitleaks
// searches a match's line again for every match of a rule, so the longest
// line of any fragment handed to it bounds its work per match.
func TestLongLineBounded(t *testing.T) {
	r, err := newRules(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	perByte := map[int64]float64{}
	for _, tc := range []struct {
		size     int64
		hotEvery int
	}{{64 << 10, 10}, {256 << 10, 2000}, {2 << 20, 2000}} {
		var b strings.Builder
		token := scantest.Token("ghp_", 36, uint64(tc.size))
		if _, err := scantest.WriteLongLine(&b, tc.size, 1, token, tc.hotEvery); err != nil {
			t.Fatal(err)
		}
		text := b.String()
		ix := *r.regions
		ix.cost = &scanCost{}
		hits, ok := ix.hits(context.Background(), "data.min.json", text, len(text))
		if !ok {
			t.Fatalf("%d-byte line: not region-scanned", len(text))
		}
		at := strings.Index(text, token)
		if !slices.ContainsFunc(hits, func(h credential.Hit) bool { return h.Rule == "github-pat" && h.Start == at }) {
			t.Errorf("%d-byte line: token at %d not found; hits %v", len(text), at, hits)
		}
		if got, limit := ix.cost.longestLine.Load(), int64(pieceSize+2*blockCap); got > limit {
			t.Errorf("%d-byte line: a fragment handed to gitleaks holds a %d-byte line, want at most %d", len(text), got, limit)
		}
		if got := ix.cost.findingLines.Load(); got > int64(len(hits))*(pieceSize+2*blockCap) {
			t.Errorf("%d-byte line: findings' lines total %d bytes for %d hits", len(text), got, len(hits))
		}
		perByte[tc.size] = float64(ix.cost.fragments.Load()) / float64(len(text))
		t.Logf("%d-byte line (keywords in 1 of %d members): %.2f fragment bytes per byte", len(text), tc.hotEvery, perByte[tc.size])
	}
	// Eight times the text, eight times the work (give or take the ends).
	if small, big := perByte[256<<10], perByte[2<<20]; big > small*1.25+0.5 {
		t.Errorf("fragment bytes per byte grow with the line: %.2f at 256 KiB, %.2f at 2 MiB", small, big)
	}
}

func TestMaxMatchLen(t *testing.T) {
	tests := map[string]int{
		`abc`:                    3,
		`ghp_[0-9a-zA-Z]{36}`:    40,
		`a\s*b`:                  -1,
		`(?i)k`:                  3, // KELVIN SIGN
		`[a-z]{2}|x{5}`:          5,
		`.{0,3}`:                 12,
		`\bx$`:                   1,
		`(`:                      -1,
		`[\x{10000}-\x{10FFFF}]`: 4,
	}
	for expr, want := range tests {
		if got := maxMatchLen(expr); got != want {
			t.Errorf("maxMatchLen(%q) = %d, want %d", expr, got, want)
		}
	}
}

func TestWindowsBounded(t *testing.T) {
	short := "a = 1\n" + "key = value\n" + "b = 2\n"
	lines := lineStarts(short)
	got := windows([]mark{{line: 1, start: 6, end: 9}}, 1, windowCap, lines, len(short))
	if want := []window{{from: 0, to: len(short)}}; !slices.Equal(got, want) {
		t.Errorf("windows(short text) = %v, want %v", got, want)
	}
	long := strings.Repeat("x", 3*windowCap) + "key=v" + strings.Repeat("y", 3*windowCap)
	k := 3 * windowCap
	got = windows([]mark{{line: 0, start: k, end: k + 3}}, 0, windowCap, lineStarts(long), len(long))
	if want := []window{{from: k - windowCap, to: k + 3 + windowCap, long: true}}; !slices.Equal(got, want) {
		t.Errorf("windows(long line) = %v, want %v", got, want)
	}
}

// FuzzLongLineRegions puts any text in the middle of a line longer than the
// region margins, so that regions are cut and split into pieces, and checks
// that every hit lies in the text and that a token planted after the text
// is still found.
func FuzzLongLineRegions(f *testing.F) {
	r, err := newRules(context.Background())
	if err != nil {
		f.Fatal(err)
	}
	f.Add("password = \"" + scantest.Token("", 24, 1) + "\" key=")
	f.Add("x: " + base64.StdEncoding.EncodeToString([]byte("token: "+scantest.Token("ghp_", 36, 2))) + " secret")
	f.Add("-----BEGIN PRIVATE KEY----- " + strings.Repeat("QUJD", 40) + " \u212aEY")
	token := scantest.Token("ghp_", 36, 9)
	f.Fuzz(func(t *testing.T, text string) {
		pad := strings.Repeat("token=abc,", 2*windowCap/10)
		line := pad + strings.ReplaceAll(text, "\n", " ") + " " + token + " " + pad
		hits, ok := r.regions.hits(context.Background(), "f.min.js", line, len(line))
		if !ok {
			return
		}
		at := strings.LastIndex(line, token)
		found := false
		for _, h := range hits {
			if h.Start < 0 || h.End < h.Start || h.End > len(line) {
				t.Fatalf("hit %v outside the %d-byte line", h, len(line))
			}
			found = found || h.Start == at && h.Rule == "github-pat"
		}
		if !found && !strings.Contains(text, "gitleaks:allow") {
			t.Fatalf("planted token at %d not found; hits %v", at, hits)
		}
	})
}
