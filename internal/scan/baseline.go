package scan

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
)

// maxBaselineSize bounds the baseline files read.
const maxBaselineSize = 256 << 20

// Baseline is the set of known findings from a previous JSON report. A
// finding is known when a baseline finding has the same fingerprint and
// path: the same secret still in the same place.
type Baseline struct {
	known map[baselineKey]struct{}
}

type baselineKey struct{ fingerprint, path string }

// ParseBaseline reads a JSON report written by WriteJSON. It rejects
// documents that are not a version-1 report, or whose findings lack a
// fingerprint or path. Unknown fields are ignored, so reports from later
// versions that keep version 1 still load.
func ParseBaseline(r io.Reader) (*Baseline, error) {
	var doc struct {
		Version  *int `json:"version"`
		Findings *[]struct {
			Fingerprint string `json:"fingerprint"`
			Location    struct {
				Path string `json:"path"`
			} `json:"location"`
		} `json:"findings"`
	}
	dec := json.NewDecoder(io.LimitReader(r, maxBaselineSize))
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("parse baseline: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("parse baseline: trailing data after the report")
	}
	if doc.Version == nil || *doc.Version != ReportVersion {
		return nil, fmt.Errorf("parse baseline: not a version %d signet scan report", ReportVersion)
	}
	if doc.Findings == nil {
		return nil, errors.New("parse baseline: no findings array")
	}
	b := &Baseline{known: make(map[baselineKey]struct{}, len(*doc.Findings))}
	for i, f := range *doc.Findings {
		if f.Fingerprint == "" || f.Location.Path == "" {
			return nil, fmt.Errorf("parse baseline: finding %d has no fingerprint or path", i)
		}
		b.known[baselineKey{f.Fingerprint, f.Location.Path}] = struct{}{}
	}
	return b, nil
}

// LoadBaseline reads the baseline file at path (see ParseBaseline).
func LoadBaseline(path string) (*Baseline, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("load baseline: %w", err)
	}
	defer f.Close()
	return ParseBaseline(f)
}

// Len returns the number of known findings.
func (b *Baseline) Len() int { return len(b.known) }

// Contains reports whether f is a known finding.
func (b *Baseline) Contains(f Finding) bool {
	_, ok := b.known[baselineKey{f.Fingerprint, f.Location.Path}]
	return ok
}
