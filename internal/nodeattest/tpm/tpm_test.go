package tpm_test

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-id/signet/internal/errkind"
	"github.com/signet-id/signet/internal/model"
	"github.com/signet-id/signet/internal/nodeattest"
	"github.com/signet-id/signet/internal/nodeattest/tpm"
	"github.com/signet-id/signet/internal/nodeattest/tpm/tpmtest"
)

var td = spiffeid.RequireTrustDomainFromString("example.org")

// challenger answers challenges with an attestor's Responder.
type challenger struct{ a nodeattest.Responder }

func (c challenger) Challenge(ctx context.Context, ch []byte) ([]byte, error) {
	return c.a.Respond(ctx, ch)
}

// answer is a challenger that answers every challenge with fixed bytes or
// an error.
type answer struct {
	b   []byte
	err error
}

func (a answer) Challenge(context.Context, []byte) ([]byte, error) { return a.b, a.err }

// allowList is a dynamic EK allow list.
type allowList struct {
	hashes map[string]bool
	err    error
}

func (l allowList) EKAllowed(_ context.Context, h string) (bool, error) { return l.hashes[h], l.err }

func newAttestor(t *testing.T, sim *tpmtest.Sim) *tpm.Attestor {
	t.Helper()
	a, err := tpm.New(tpm.AgentConfig{Device: sim.Path}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func newVerifier(t *testing.T, cfg tpm.Config, allow tpm.EKAllowList) *tpm.Verifier {
	t.Helper()
	v, err := tpm.NewVerifier(cfg, tpm.VerifierDeps{TrustDomain: td, AllowList: allow})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func ekHash(t *testing.T, sim *tpmtest.Sim) string {
	t.Helper()
	h, err := tpm.EKHash(sim.EKPublic(t))
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func attest(t *testing.T, v *tpm.Verifier, a *tpm.Attestor) (nodeattest.Result, error) {
	t.Helper()
	p, err := a.Payload(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return v.Attest(t.Context(), p, challenger{a})
}

func refusal(err error) bool {
	k := errkind.Of(err)
	return err != nil && (k == errkind.PermissionDenied || k == errkind.InvalidArgument)
}

func wantResult(t *testing.T, res nodeattest.Result, h, manufacturer string) {
	t.Helper()
	if want := spiffeid.RequireFromSegments(td, "signet", "agent", "tpm", h); res.AgentID != want {
		t.Errorf("Attest().AgentID = %v, want %v", res.AgentID, want)
	}
	want := []model.Selector{{Type: "tpm", Value: "ek_hash:" + h}}
	if manufacturer != "" {
		want = append(want, model.Selector{Type: "tpm", Value: "manufacturer:" + manufacturer})
	}
	if !slices.Equal(res.Selectors, want) {
		t.Errorf("Attest().Selectors = %v, want %v", res.Selectors, want)
	}
	if !res.CanReattest {
		t.Errorf("Attest().CanReattest = false, want true")
	}
}

func TestAttestAllowListedEK(t *testing.T) {
	sim := tpmtest.Start(t)
	a := newAttestor(t, sim)
	h := ekHash(t, sim)

	t.Run("static list", func(t *testing.T) {
		res, err := attest(t, newVerifier(t, tpm.Config{AllowedEKHashes: []string{strings.ToUpper(h)}}, nil), a)
		if err != nil {
			t.Fatalf("Attest() error = %v", err)
		}
		wantResult(t, res, h, "")
	})
	t.Run("dynamic list", func(t *testing.T) {
		res, err := attest(t, newVerifier(t, tpm.Config{}, allowList{hashes: map[string]bool{h: true}}), a)
		if err != nil {
			t.Fatalf("Attest() error = %v", err)
		}
		wantResult(t, res, h, "")
	})
	t.Run("not allowed", func(t *testing.T) {
		other := strings.Repeat("ab", 32)
		_, err := attest(t, newVerifier(t, tpm.Config{AllowedEKHashes: []string{other}}, allowList{}), a)
		if !errkind.Is(err, errkind.PermissionDenied) || !strings.Contains(err.Error(), h) {
			t.Errorf("Attest(unknown EK) error = %v, want PermissionDenied naming the EK hash", err)
		}
	})
	t.Run("allow list failing is not a refusal", func(t *testing.T) {
		_, err := attest(t, newVerifier(t, tpm.Config{}, allowList{err: errors.New("store down")}), a)
		if err == nil || refusal(err) || !strings.Contains(err.Error(), "store down") {
			t.Errorf("Attest(allow list down) error = %v, want the store's error, not a refusal", err)
		}
	})
	t.Run("re-attests as the same node", func(t *testing.T) {
		v := newVerifier(t, tpm.Config{AllowedEKHashes: []string{h}}, nil)
		for range 2 {
			res, err := attest(t, v, a)
			if err != nil {
				t.Fatalf("Attest() error = %v", err)
			}
			wantResult(t, res, h, "")
		}
	})
}

func TestAttestPersistentEK(t *testing.T) {
	sim := tpmtest.Start(t)
	h := ekHash(t, sim)
	sim.PersistEK(t)
	res, err := attest(t, newVerifier(t, tpm.Config{AllowedEKHashes: []string{h}}, nil), newAttestor(t, sim))
	if err != nil {
		t.Fatalf("Attest() error = %v", err)
	}
	wantResult(t, res, h, "")
}

func TestAttestEKCertificate(t *testing.T) {
	sim := tpmtest.Start(t)
	ek := sim.EKPublic(t)
	h, err := tpm.EKHash(ek)
	if err != nil {
		t.Fatal(err)
	}
	ca := tpmtest.NewEKCA(t)
	sim.WriteEKCert(t, ca.IssueEKCert(t, ek, 0x49424D00)) // "IBM"
	a := newAttestor(t, sim)
	roots := ca.WriteRoot(t)

	t.Run("chains to ek_ca_path (a directory)", func(t *testing.T) {
		res, err := attest(t, newVerifier(t, tpm.Config{EKCAPath: roots}, nil), a)
		if err != nil {
			t.Fatalf("Attest() error = %v", err)
		}
		wantResult(t, res, h, "IBM")
	})
	t.Run("chains to ek_ca_path (a file)", func(t *testing.T) {
		res, err := attest(t, newVerifier(t, tpm.Config{EKCAPath: filepath.Join(roots, "root.pem")}, nil), a)
		if err != nil {
			t.Fatalf("Attest() error = %v", err)
		}
		wantResult(t, res, h, "IBM")
	})
	otherRoots := tpmtest.NewEKCA(t).WriteRoot(t)
	t.Run("another manufacturer's root", func(t *testing.T) {
		_, err := attest(t, newVerifier(t, tpm.Config{EKCAPath: otherRoots}, nil), a)
		if !errkind.Is(err, errkind.PermissionDenied) || !strings.Contains(err.Error(), "does not chain") {
			t.Errorf("Attest(unknown root) error = %v, want PermissionDenied saying the certificate does not chain", err)
		}
	})
	t.Run("unverified certificate but allowed hash: no manufacturer", func(t *testing.T) {
		res, err := attest(t, newVerifier(t, tpm.Config{EKCAPath: otherRoots, AllowedEKHashes: []string{h}}, nil), a)
		if err != nil {
			t.Fatalf("Attest() error = %v", err)
		}
		wantResult(t, res, h, "")
	})
	t.Run("certificate of another key", func(t *testing.T) {
		p, err := a.Payload(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		pp, err := tpm.ParsePayload(p)
		if err != nil {
			t.Fatal(err)
		}
		other := tpmtest.Start(t)
		pp.EKCert = ca.IssueEKCert(t, other.EKPublic(t), 0x49424D00)
		p, err = pp.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		_, err = newVerifier(t, tpm.Config{EKCAPath: roots}, nil).Attest(t.Context(), p, challenger{a})
		if !errkind.Is(err, errkind.PermissionDenied) || !strings.Contains(err.Error(), "another key") {
			t.Errorf("Attest(certificate of another EK) error = %v, want PermissionDenied", err)
		}
	})
}

func TestAttestRefusesBadAnswers(t *testing.T) {
	sim := tpmtest.Start(t)
	a := newAttestor(t, sim)
	v := newVerifier(t, tpm.Config{AllowedEKHashes: []string{ekHash(t, sim)}}, nil)
	p, err := a.Payload(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]nodeattest.Challenger{
		"wrong secret":    answer{b: make([]byte, 32)},
		"empty answer":    answer{},
		"agent error":     answer{err: errors.New("stream closed")},
		"kinded refusal":  answer{err: errkind.New(errkind.InvalidArgument, "expected a challenge response")},
		"oversize answer": answer{b: make([]byte, nodeattest.MaxPayloadSize)},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := v.Attest(t.Context(), p, c); !refusal(err) {
				t.Errorf("Attest(%s) error = %v, want a refusal", name, err)
			}
		})
	}
	t.Run("a challenge for another AK", func(t *testing.T) {
		// The agent of another TPM answers: it holds neither the EK nor the AK.
		other := newAttestor(t, tpmtest.Start(t))
		if _, err := v.Attest(t.Context(), p, challenger{other}); !refusal(err) {
			t.Errorf("Attest(answered by another TPM) error = %v, want a refusal", err)
		}
	})
}

// TestOneTPMManyAttestors runs attestations at once through several
// attestors of the same swtpm: the agent half serializes them.
func TestOneTPMManyAttestors(t *testing.T) {
	sim := tpmtest.Start(t)
	h := ekHash(t, sim)
	sim.PersistEK(t)
	v := newVerifier(t, tpm.Config{AllowedEKHashes: []string{h}}, nil)
	attestors := make([]*tpm.Attestor, 4)
	for i := range attestors {
		attestors[i] = newAttestor(t, sim)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 2*len(attestors))
	for range 2 {
		for _, a := range attestors {
			wg.Go(func() {
				p, err := a.Payload(t.Context())
				if err == nil {
					_, err = v.Attest(t.Context(), p, challenger{a})
				}
				if err != nil {
					errs <- err
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("concurrent attestation error = %v", err)
	}
}

func TestNewAttestorDeviceErrors(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct{ device, want string }{
		"missing":   {filepath.Join(dir, "tpmrm0"), "device: " + filepath.Join(dir, "tpmrm0") + ": no such file or directory"},
		"directory": {dir, "device: " + dir + " is a directory, neither a TPM character device nor"},
		"file":      {file, "device: " + file + " is a regular file"},
		"relative":  {"dev/tpmrm0", `device: "dev/tpmrm0" is not an absolute path`},
		"not a tpm": {"/dev/null", "device: /dev/null: "},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := tpm.New(tpm.AgentConfig{Device: tc.device}, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("New(device %s) error = %v, want %q", tc.device, err, tc.want)
			}
		})
	}
	t.Run("dead socket", func(t *testing.T) {
		sock := filepath.Join(t.TempDir(), "tpm.sock")
		l, err := net.Listen("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		l.(*net.UnixListener).SetUnlinkOnClose(false)
		l.Close()
		_, err = tpm.New(tpm.AgentConfig{Device: sock}, nil)
		if err == nil || !strings.Contains(err.Error(), "device: "+sock+": ") {
			t.Errorf("New(socket nobody listens on) error = %v, want one naming the device", err)
		}
	})
}

func TestVerifierConfig(t *testing.T) {
	hash := strings.Repeat("0f", 32)
	dir := t.TempDir()
	junk := filepath.Join(dir, "junk.pem")
	if err := os.WriteFile(junk, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		cfg  tpm.Config
		want string
	}{
		"nothing to trust": {tpm.Config{}, "ek_ca_path, allowed_ek_hashes: give at least one"},
		"bad hashes": {tpm.Config{AllowedEKHashes: []string{hash, "abc", hash + "0"}},
			`allowed_ek_hashes[1]: "abc" is not a SHA-256`},
		"missing roots": {tpm.Config{EKCAPath: filepath.Join(dir, "none")}, "ek_ca_path: " + filepath.Join(dir, "none") + ": no such file"},
		"junk roots":    {tpm.Config{EKCAPath: junk}, "ek_ca_path: " + junk + ": neither PEM certificates nor one DER certificate"},
		"empty dir":     {tpm.Config{EKCAPath: t.TempDir()}, "no self-signed EK root certificate"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := tpm.NewVerifier(tc.cfg, tpm.VerifierDeps{TrustDomain: td})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("NewVerifier(%+v) error = %v, want %q", tc.cfg, err, tc.want)
			}
		})
	}
	if err := (tpm.Config{AllowedEKHashes: []string{hash, "x", "y"}}).Validate(); err == nil || !strings.Contains(err.Error(), "[1]") || !strings.Contains(err.Error(), "[2]") {
		t.Errorf("Validate() = %v, want every bad hash reported", err)
	}
}

func TestAgentID(t *testing.T) {
	h := strings.Repeat("ab", 32)
	id, err := tpm.AgentID(td, h)
	if err != nil {
		t.Fatal(err)
	}
	if want := "spiffe://example.org/signet/agent/tpm/" + h; id.String() != want {
		t.Errorf("AgentID() = %s, want %s", id, want)
	}
	for _, bad := range []string{"", "ab", strings.ToUpper(h), h + "00"} {
		if _, err := tpm.AgentID(td, bad); err == nil {
			t.Errorf("AgentID(%q) error = nil, want an error", bad)
		}
	}
}
