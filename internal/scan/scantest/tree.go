package scantest

import (
	"bufio"
	"encoding/base64"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
)

// words is the vocabulary of generated source. Like real code, it holds
// a few of the words that wake gitleaks' keyword prefilter (key, token,
// auth, api, secret, password); see sensitive.
var words = strings.Fields(`request response handler server client config value result error
context buffer reader writer stream index count total offset length name path file line
user account session cache store update create delete insert select query table column
row record field schema version build deploy release service cluster node pod container
image registry network route parse format encode decode marshal compress hash sign verify
check validate retry timeout start stop close open read write flush sync lock unlock wait
notify send receive handle process filter map reduce sort search find match replace split
join append prepend remove clear reset init load save dump print log trace debug info warn`)

// sensitive words appear in one generated line in ten.
var sensitive = strings.Fields(`key token auth api secret password access credential`)

// WriteTree writes about total bytes of source-like text files (Go,
// Python, YAML, JSON, shell) under dir, in nested directories of 1 KB to
// 48 KB files, with one fake GitHub token per 500 files. It returns the
// number of files and bytes written. The same seed writes the same tree.
func WriteTree(dir string, total int64, seed uint64) (files int, written int64, err error) {
	rnd := rand.New(rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), 't', 'r', 'e', 'e'}))
	exts := []string{".go", ".py", ".yaml", ".json", ".sh", ".js", ".md"}
	for written < total {
		sub := filepath.Join(dir, fmt.Sprintf("pkg%02d", files/400), fmt.Sprintf("mod%02d", files/40%10))
		if err := os.MkdirAll(sub, 0o755); err != nil {
			return files, written, fmt.Errorf("write tree: %w", err)
		}
		ext := exts[rnd.IntN(len(exts))]
		size := min(int64(1024+rnd.IntN(47*1024)), total-written)
		p := filepath.Join(sub, fmt.Sprintf("file%05d%s", files, ext))
		n, err := writeSource(p, ext, size, rnd, files%500 == 499)
		if err != nil {
			return files, written, err
		}
		files++
		written += n
	}
	return files, written, nil
}

func writeSource(p, ext string, size int64, rnd *rand.Rand, plant bool) (int64, error) {
	f, err := os.Create(p)
	if err != nil {
		return 0, fmt.Errorf("write tree: %w", err)
	}
	w := bufio.NewWriter(f)
	var n int64
	word := func() string { return words[rnd.IntN(len(words))] }
	hot := func() string {
		if rnd.IntN(10) == 0 {
			return sensitive[rnd.IntN(len(sensitive))]
		}
		return word()
	}
	for line := 0; n < size; line++ {
		var s string
		switch r := rnd.IntN(20); {
		case plant && line == 3:
			s = fmt.Sprintf("GITHUB_TOKEN = %q", Token("ghp_", 36, rnd.Uint64()))
		case r < 3:
			s = fmt.Sprintf("// %s %s the %s %s before %s.", word(), word(), word(), word(), word())
		case r < 8:
			s = fmt.Sprintf("\t%s%s := %s.%s(%s, %d)", word(), strings.ToUpper(word()[:1]), word(), hot(), word(), rnd.IntN(1000))
		case r < 11:
			s = fmt.Sprintf("\tif err := %s.%s(ctx, %q); err != nil {", word(), word(), word()+"/"+word())
		case r < 13:
			s = fmt.Sprintf("  %s_%s: %q", word(), word(), word()+"-"+word())
		case r < 14 && rnd.IntN(5) == 0:
			blob := make([]byte, 24+rnd.IntN(48))
			for i := range blob {
				blob[i] = byte(rnd.Uint32())
			}
			s = fmt.Sprintf("\t%s = %q", word(), base64.StdEncoding.EncodeToString(blob))
		case r < 16:
			s = fmt.Sprintf("\treturn %s.%s(%s)", word(), word(), word())
		case r < 18:
			s = "\t}"
		default:
			s = ""
		}
		if ext == ".json" {
			s = fmt.Sprintf("  %q: %q,", word(), strings.TrimSpace(s))
		}
		k, _ := w.WriteString(s + "\n")
		n += int64(k)
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return n, fmt.Errorf("write tree: %w", err)
	}
	if err := f.Close(); err != nil {
		return n, fmt.Errorf("write tree: %w", err)
	}
	return n, nil
}
