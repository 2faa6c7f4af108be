// Package tpmtest runs software TPMs for tests of the tpm node attestation
// method: Start launches Debian's swtpm on a unix socket in a temp dir (the
// agent half talks to it as it would to /dev/tpmrm0), and the helpers
// provision what a TPM manufacturer would (an EK certificate in NV, signed
// by a test CA).
//
// Tests skip when swtpm is not installed, unless the CI environment variable
// is set: in CI a missing swtpm fails the test, so that a broken install
// step never passes as "skipped".
package tpmtest

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport/linuxudstpm"
)

// Sim is a running swtpm. It is stopped by the cleanup of the test that
// started it.
type Sim struct {
	// Path is the unix socket of the TPM's command channel (swtpm's
	// --server type=unixio), usable as the agent's device.
	Path string
	// Dir holds the TPM's state, the sockets and swtpm's log.
	Dir string
}

// Require skips t when swtpm is missing, or fails it when CI is set.
func Require(t testing.TB) string {
	t.Helper()
	bin, err := exec.LookPath("swtpm")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("swtpm is not installed (apt-get install -y swtpm swtpm-tools): CI must run the TPM tests")
		}
		t.Skip("swtpm is not installed (apt-get install -y swtpm swtpm-tools)")
	}
	return bin
}

// Start launches a fresh swtpm (TPM 2.0, already started up with
// TPM2_Startup(CLEAR)) with its state in a new temp dir, waits until its
// socket accepts connections, and stops it in t.Cleanup.
func Start(t testing.TB) *Sim {
	t.Helper()
	bin := Require(t)
	// Unix socket paths are limited to 108 bytes: t.TempDir() under a long
	// test name can be longer, so use a short directory of our own.
	dir, err := os.MkdirTemp("", "swtpm")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	s := &Sim{Path: filepath.Join(dir, "tpm.sock"), Dir: dir}
	logPath := filepath.Join(dir, "swtpm.log")
	cmd := exec.Command(bin, "socket",
		"--tpm2",
		"--tpmstate", "dir="+dir,
		"--server", "type=unixio,path="+s.Path,
		"--ctrl", "type=unixio,path="+filepath.Join(dir, "ctrl.sock"),
		"--flags", "not-need-init,startup-clear",
		"--log", "file="+logPath,
	)
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start swtpm: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	// The socket file appears when swtpm binds it, a moment before it
	// listens: wait until the TPM answers a command.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if s.ready() {
			return s
		}
		select {
		case err := <-exited:
			exited <- err
			log, _ := os.ReadFile(logPath)
			t.Fatalf("swtpm exited before its socket appeared: %v\n%s%s", err, stderr.String(), log)
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("swtpm socket %s did not appear within 10s", s.Path)
		}
	}
}

// ready reports whether the TPM answers TPM2_GetCapability on its socket.
func (s *Sim) ready() bool {
	if fi, err := os.Stat(s.Path); err != nil || fi.Mode()&os.ModeSocket == 0 {
		return false
	}
	tp, err := linuxudstpm.Open(s.Path)
	if err != nil {
		return false
	}
	defer tp.Close()
	_, err = tpm2.GetCapability{Capability: tpm2.TPMCapTPMProperties, Property: uint32(tpm2.TPMPTManufacturer), PropertyCount: 1}.Execute(tp)
	return err == nil
}
