package k8s_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/signet-id/signet/internal/workloadattest/k8s"
)

// FuzzParsePods feeds the kubelet answer parser arbitrary bodies: it must
// return an error or an index, never panic, and every selector it makes
// must be valid.
func FuzzParsePods(f *testing.F) {
	data, err := os.ReadFile(filepath.Join("testdata", "podlist.json"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(data)
	f.Add([]byte(`{"kind":"PodList","items":[{"metadata":{"uid":"u"},"status":{"containerStatuses":[{"containerID":"x://"}]}}]}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, body []byte) {
		sels, err := k8s.ParsePodsForFuzz(body, time.Time{})
		if err != nil {
			return
		}
		for _, s := range sels {
			if err := s.Validate(); err != nil {
				t.Errorf("parsePods made invalid selector %v: %v", s, err)
			}
		}
	})
}
