// Command gentree writes the scanner's benchmark tree (see
// scantest.WriteBenchTree): source-like files plus single-line files, so
// that `signet scan` and other scanners can be timed on the same files.
//
//	go run ./internal/scan/scantest/gentree -dir /tmp/scanbench -source-mb 100 -long-mb 10,100
package main

import (
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/signet-id/signet/internal/scan/scantest"
)

func main() {
	dir := flag.String("dir", "", "directory to write the tree in (must not exist or be empty)")
	sourceMB := flag.Int64("source-mb", 100, "megabytes of ordinary source files")
	longMB := flag.String("long-mb", "10,100", "comma-separated sizes in megabytes of the single-line files")
	seed := flag.Uint64("seed", 1, "seed of the generator; the same seed writes the same tree")
	flag.Parse()
	if err := run(*dir, *sourceMB, *longMB, *seed); err != nil {
		fmt.Fprintln(os.Stderr, "gentree:", err)
		os.Exit(2)
	}
}

func run(dir string, sourceMB int64, longMB string, seed uint64) error {
	if dir == "" {
		return fmt.Errorf("-dir: required (a directory that does not exist or is empty)")
	}
	if entries, err := os.ReadDir(dir); err == nil && len(entries) > 0 {
		return fmt.Errorf("-dir %s: not empty; want a new or empty directory", dir)
	}
	if sourceMB < 0 {
		return fmt.Errorf("-source-mb %d: want zero or more", sourceMB)
	}
	var sizes []int64
	for _, f := range strings.Split(longMB, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		n, err := strconv.ParseInt(f, 10, 64)
		if err != nil || n <= 0 {
			return fmt.Errorf("-long-mb %q: want comma-separated positive whole numbers of megabytes", longMB)
		}
		sizes = append(sizes, n<<20)
	}
	files, n, err := scantest.WriteBenchTree(dir, sourceMB<<20, sizes, seed)
	if err != nil {
		return err
	}
	fmt.Printf("%s: %d files, %d bytes\n", dir, files, n)
	return nil
}
