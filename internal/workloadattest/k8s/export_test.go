package k8s

import (
	"context"
	"time"

	"github.com/signet-id/signet/internal/model"
	"github.com/signet-id/signet/internal/workloadattest"
	"github.com/signet-id/signet/internal/workloadattest/cgroup"
)

// SetProcRoot points the attestor at a directory laid out like /proc.
func SetProcRoot(a *Attestor, dir string) { a.procRoot = dir }

// KubeletCalls is the number of requests sent to the kubelet.
func KubeletCalls(a *Attestor) int64 { return a.calls.Load() }

// ParsePodsForFuzz runs the kubelet answer parser and returns every
// selector of every container.
func ParsePodsForFuzz(body []byte, fetched time.Time) ([]model.Selector, error) {
	idx, err := parsePods(body, fetched)
	if err != nil {
		return nil, err
	}
	var out []model.Selector
	for _, c := range idx.containers {
		out = append(out, c.selectors...)
	}
	return out, nil
}

// LookupContainer finds a container as Attest does after reading the
// caller's cgroup.
func LookupContainer(ctx context.Context, a *Attestor, podUID, id string) ([]model.Selector, error) {
	info, err := a.lookup(ctx, workloadattest.Peer{}, cgroup.Container{ID: id, PodUID: podUID})
	return info.selectors, err
}
