package scantest

import (
	"bufio"
	"encoding/base64"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
)

// WriteLongLine writes about size bytes of minified JSON-like text to w on
// a single line (no newline at all): string and number members whose names
// include, one in hotEvery (never if hotEvery is 0), a word that wakes
// gitleaks' keyword prefilter, and now and then a base64 blob. If plant is not empty it is written once,
// as a member value, at the middle of the line. It returns the bytes
// written. The same seed writes the same text.
func WriteLongLine(w io.Writer, size int64, seed uint64, plant string, hotEvery int) (int64, error) {
	rnd := rand.New(rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), 'l', 'i', 'n', 'e'}))
	bw := bufio.NewWriterSize(w, 64<<10)
	word := func() string { return words[rnd.IntN(len(words))] }
	hot := func() string {
		if hotEvery > 0 && rnd.IntN(hotEvery) == 0 {
			return sensitive[rnd.IntN(len(sensitive))]
		}
		return word()
	}
	var n int64
	write := func(s string) error {
		k, err := bw.WriteString(s)
		n += int64(k)
		return err
	}
	if err := write("{"); err != nil {
		return n, fmt.Errorf("write long line: %w", err)
	}
	planted := plant == ""
	for n < size-1 {
		var s string
		switch r := rnd.IntN(50); {
		case !planted && n >= size/2:
			s = fmt.Sprintf("%q:%q,", "github", plant)
			planted = true
		case r == 0:
			blob := make([]byte, 24+rnd.IntN(48))
			for i := range blob {
				blob[i] = byte(rnd.Uint32())
			}
			s = fmt.Sprintf("%q:%q,", word(), base64.StdEncoding.EncodeToString(blob))
		case r < 20:
			s = fmt.Sprintf("%q:%d,", word()+strings.ToUpper(hot()[:1])+word(), rnd.IntN(100000))
		default:
			s = fmt.Sprintf("%q:%q,", hot()+"_"+word(), word()+"-"+word())
		}
		if err := write(s); err != nil {
			return n, fmt.Errorf("write long line: %w", err)
		}
	}
	if err := write("}"); err != nil {
		return n, fmt.Errorf("write long line: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return n, fmt.Errorf("write long line: %w", err)
	}
	return n, nil
}

// WriteBenchTree writes the scanner's benchmark tree under dir: about
// sourceBytes of source files (see WriteTree) under src/, and one
// single-line file of each size in longLines (see WriteLongLine) under
// long/, each with a GitHub token planted at its middle and keywords in
// one member in ten. It returns the
// number of files and bytes written.
func WriteBenchTree(dir string, sourceBytes int64, longLines []int64, seed uint64) (files int, written int64, err error) {
	files, written, err = WriteTree(filepath.Join(dir, "src"), sourceBytes, seed)
	if err != nil {
		return files, written, err
	}
	if err := os.MkdirAll(filepath.Join(dir, "long"), 0o755); err != nil {
		return files, written, fmt.Errorf("write bench tree: %w", err)
	}
	for i, size := range longLines {
		f, err := os.Create(filepath.Join(dir, "long", fmt.Sprintf("line%d-%dMB.min.json", i, size>>20)))
		if err != nil {
			return files, written, fmt.Errorf("write bench tree: %w", err)
		}
		n, err := WriteLongLine(f, size, seed+uint64(i), Token("ghp_", 36, seed+uint64(i)), 10)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return files, written, fmt.Errorf("write bench tree: %w", err)
		}
		files++
		written += n
	}
	return files, written, nil
}
