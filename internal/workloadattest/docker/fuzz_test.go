package docker_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/signet-id/signet/internal/workloadattest/docker"
)

// FuzzParseInspect feeds the inspect-answer parser arbitrary bodies: an
// error or valid selectors, never a panic.
func FuzzParseInspect(f *testing.F) {
	data, err := os.ReadFile(filepath.Join("testdata", "inspect.json"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(data)
	f.Add([]byte(`{"Id":"x","Config":{"Env":["A","=","A=B=C"],"Labels":{"":""}}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		sels, err := docker.ParseInspect(body, "9be9a4d6cd4a9d1b3c1f0a5e6f7b8c9d0e1f2a3b4c5d6e7f8091a2b3c4d5e6f7", []string{"A", "APP_ROLE"})
		if err != nil {
			return
		}
		for _, s := range sels {
			if err := s.Validate(); err != nil {
				t.Errorf("invalid selector %v: %v", s, err)
			}
		}
	})
}
