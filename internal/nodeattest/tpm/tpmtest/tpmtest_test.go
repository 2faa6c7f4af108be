package tpmtest_test

import (
	"fmt"
	"runtime"
	"testing"

	"github.com/signet-id/signet/internal/nodeattest/tpm/tpmtest"
)

// fakeTB records how Require ends a test.
type fakeTB struct {
	testing.TB
	failed, skipped string
}

func (f *fakeTB) Helper() {}
func (f *fakeTB) Fatalf(format string, args ...any) {
	f.failed = fmt.Sprintf(format, args...)
	runtime.Goexit()
}
func (f *fakeTB) Skip(args ...any) {
	f.skipped = fmt.Sprint(args...)
	runtime.Goexit()
}

func require(f *fakeTB) {
	done := make(chan struct{})
	go func() { defer close(done); tpmtest.Require(f) }()
	<-done
}

func TestRequireWithoutSwtpm(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	t.Run("skips outside CI", func(t *testing.T) {
		t.Setenv("CI", "")
		f := &fakeTB{TB: t}
		require(f)
		if f.skipped == "" || f.failed != "" {
			t.Errorf("Require without swtpm and CI: skipped %q, failed %q; want a skip", f.skipped, f.failed)
		}
	})
	t.Run("fails in CI", func(t *testing.T) {
		t.Setenv("CI", "true")
		f := &fakeTB{TB: t}
		require(f)
		if f.failed == "" || f.skipped != "" {
			t.Errorf("Require without swtpm in CI: skipped %q, failed %q; want a failure", f.skipped, f.failed)
		}
	})
}

func TestStart(t *testing.T) {
	s := tpmtest.Start(t)
	if s.Path == "" || s.Dir == "" {
		t.Fatalf("Start() = %+v, want a socket path and a state dir", s)
	}
	if pub := s.EKPublic(t); pub == nil {
		t.Errorf("EKPublic() = nil")
	}
}
