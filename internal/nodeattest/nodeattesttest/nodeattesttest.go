// Package nodeattesttest is the conformance suite of node attestation
// methods: Run for agent halves (nodeattest.Attestor) and RunVerifier for
// server halves (nodeattest.Verifier). Each method's tests call both with
// constructors that go through the plugin registry, exactly as production
// builds them.
package nodeattesttest

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-id/signet/internal/errkind"
	"github.com/signet-id/signet/internal/nodeattest"
)

// Run checks the contract of nodeattest.Attestor against attestors made by
// newAttestor: a valid name, the same for every instance; a payload that is non-empty, safe to
// fetch concurrently, honours a cancelled context, and never shows up in
// fmt or log/slog output of the attestor.
func Run(t *testing.T, newAttestor func(t *testing.T) nodeattest.Attestor) {
	t.Helper()
	t.Run("Name", func(t *testing.T) {
		a := newAttestor(t)
		if err := nodeattest.ValidName(a.Name()); err != nil {
			t.Fatalf("Name() = %q: %v", a.Name(), err)
		}
		if b := newAttestor(t); b.Name() != a.Name() {
			t.Fatalf("Name() = %q then %q: not stable across instances", a.Name(), b.Name())
		}
	})
	t.Run("Payload", func(t *testing.T) {
		a := newAttestor(t)
		p, err := a.Payload(context.Background())
		if err != nil {
			t.Fatalf("Payload() error = %v", err)
		}
		if len(p) == 0 {
			t.Fatalf("Payload() is empty")
		}
	})
	t.Run("PayloadConcurrent", func(t *testing.T) {
		a := newAttestor(t)
		var wg sync.WaitGroup
		errs := make(chan error, 8)
		for range 8 {
			wg.Go(func() {
				if _, err := a.Payload(context.Background()); err != nil {
					errs <- err
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Errorf("concurrent Payload() error = %v", err)
		}
	})
	t.Run("PayloadCancelled", func(t *testing.T) {
		a := newAttestor(t)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := a.Payload(ctx); err == nil {
			t.Errorf("Payload(cancelled ctx) error = nil, want an error")
		}
	})
	t.Run("NoSecretInOutput", func(t *testing.T) {
		a := newAttestor(t)
		p, err := a.Payload(context.Background())
		if err != nil {
			t.Fatalf("Payload() error = %v", err)
		}
		var buf bytes.Buffer
		slog.New(slog.NewJSONHandler(&buf, nil)).Info("attestor", "a", a)
		slog.New(slog.NewTextHandler(&buf, nil)).Info("attestor", "a", a)
		fmt.Fprintf(&buf, "%v %+v %#v %s", a, a, a, a)
		if bytes.Contains(buf.Bytes(), p) {
			t.Errorf("attestor output contains its payload: %s", buf.String())
		}
	})
}

// VerifierCase is a server half under test, with the agent half that
// produces evidence it must admit.
type VerifierCase struct {
	Verifier nodeattest.Verifier
	// Attestor is the method's agent half, holding good evidence (made
	// fresh for this case, so single-use evidence works).
	Attestor nodeattest.Attestor
	// WantID is the agent ID the good evidence proves.
	WantID spiffeid.ID
}

// loopback answers a verifier's challenges with the attestor's Responder.
type loopback struct {
	a      nodeattest.Attestor
	rounds int
}

func (l *loopback) Challenge(ctx context.Context, c []byte) ([]byte, error) {
	l.rounds++
	if l.rounds > nodeattest.MaxChallengeRounds {
		return nil, fmt.Errorf("more than %d challenge rounds", nodeattest.MaxChallengeRounds)
	}
	r, ok := l.a.(nodeattest.Responder)
	if !ok {
		return nil, fmt.Errorf("%s sent a challenge but its attestor cannot answer", l.a.Name())
	}
	return r.Respond(ctx, c)
}

// recorder answers like loopback and keeps the answers.
type recorder struct {
	loopback
	answers [][]byte
}

func (r *recorder) Challenge(ctx context.Context, c []byte) ([]byte, error) {
	a, err := r.loopback.Challenge(ctx, c)
	r.answers = append(r.answers, bytes.Clone(a))
	return a, err
}

// replayer answers each challenge with the next recorded answer, whatever
// the challenge: an attacker replaying a captured exchange.
type replayer struct{ answers [][]byte }

func (r *replayer) Challenge(context.Context, []byte) ([]byte, error) {
	if len(r.answers) == 0 {
		return nil, fmt.Errorf("no recorded answer left")
	}
	a := r.answers[0]
	r.answers = r.answers[1:]
	return a, nil
}

// refused reports whether err is a refusal (the caller is told "node
// attestation failed"), not an internal failure.
func refused(err error) bool {
	k := errkind.Of(err)
	return err != nil && (k == errkind.PermissionDenied || k == errkind.InvalidArgument || k == errkind.NotFound)
}

// RunVerifier checks the contract of nodeattest.Verifier against the cases
// newCase builds (build them through the registry, as the server does):
// the verifier and attestor agree on a valid name; good evidence is
// admitted with WantID in its trust domain and valid selectors; garbage,
// empty and oversized payloads are refused (a refusal kind, not an
// internal error) without the payload in the error; a replay of a recorded
// exchange and a truncated or tampered payload are refused; a cancelled
// context fails; concurrent attestations with distinct evidence all
// succeed.
func RunVerifier(t *testing.T, newCase func(t *testing.T) VerifierCase) {
	t.Helper()
	t.Run("Name", func(t *testing.T) {
		c := newCase(t)
		if err := nodeattest.ValidName(c.Verifier.Name()); err != nil {
			t.Fatalf("Verifier.Name() = %q: %v", c.Verifier.Name(), err)
		}
		if c.Attestor.Name() != c.Verifier.Name() {
			t.Errorf("Verifier.Name() = %q, Attestor.Name() = %q: both halves must agree", c.Verifier.Name(), c.Attestor.Name())
		}
	})
	t.Run("AdmitsGoodEvidence", func(t *testing.T) {
		c := newCase(t)
		res, err := attest(attestCtx(t), c)
		if err != nil {
			t.Fatalf("Attest(good evidence) error = %v", err)
		}
		if res.AgentID != c.WantID {
			t.Errorf("Attest(good evidence).AgentID = %v, want %v", res.AgentID, c.WantID)
		}
		for _, s := range res.Selectors {
			if err := s.Validate(); err != nil {
				t.Errorf("Attest returned a malformed selector %v: %v", s, err)
			}
		}
	})
	t.Run("RefusesGarbage", func(t *testing.T) {
		c := newCase(t)
		for name, p := range map[string][]byte{
			"nil": nil, "empty": {}, "junk": []byte("\x00\xff not evidence \n"),
			"oversized": bytes.Repeat([]byte("A"), nodeattest.MaxPayloadSize),
		} {
			_, err := c.Verifier.Attest(attestCtx(t), p, &loopback{a: c.Attestor})
			if !refused(err) {
				t.Errorf("Attest(%s payload) error = %v, want a refusal (PermissionDenied or InvalidArgument)", name, err)
			}
			if len(p) > 8 && err != nil && strings.Contains(err.Error(), string(p)) {
				t.Errorf("Attest(%s payload) error contains the payload", name)
			}
		}
	})
	t.Run("RefusesReplay", func(t *testing.T) {
		c := newCase(t)
		p, err := c.Attestor.Payload(attestCtx(t))
		if err != nil {
			t.Fatal(err)
		}
		rec := &recorder{loopback: loopback{a: c.Attestor}}
		if _, err := c.Verifier.Attest(attestCtx(t), p, rec); err != nil {
			t.Fatalf("Attest(good evidence) error = %v", err)
		}
		// The same payload with the recorded answers: worthless, whether
		// the method is single-use, trust-on-first-use or challenge-based.
		_, err = c.Verifier.Attest(attestCtx(t), p, &replayer{answers: rec.answers})
		if !refused(err) {
			t.Errorf("Attest(replayed exchange) error = %v, want a refusal", err)
		}
	})
	t.Run("RefusesTamperedOrTruncated", func(t *testing.T) {
		for name, mutate := range map[string]func([]byte) []byte{
			"truncated":   func(p []byte) []byte { return p[:len(p)/2] },
			"first byte":  func(p []byte) []byte { p[0] ^= 0x20; return p },
			"middle byte": func(p []byte) []byte { p[len(p)/2] ^= 0x01; return p },
			"last byte":   func(p []byte) []byte { p[len(p)-1] ^= 0x01; return p },
		} {
			c := newCase(t)
			p, err := c.Attestor.Payload(attestCtx(t))
			if err != nil {
				t.Fatal(err)
			}
			_, err = c.Verifier.Attest(attestCtx(t), mutate(bytes.Clone(p)), &loopback{a: c.Attestor})
			if !refused(err) {
				t.Errorf("Attest(%s payload) error = %v, want a refusal", name, err)
			}
		}
	})
	t.Run("CancelledContext", func(t *testing.T) {
		c := newCase(t)
		ctx, cancel := context.WithCancel(attestCtx(t))
		cancel()
		if _, err := attest(ctx, c); err == nil {
			t.Errorf("Attest(cancelled ctx) error = nil, want an error")
		}
	})
	t.Run("Concurrent", func(t *testing.T) {
		cases := make([]VerifierCase, 8)
		for i := range cases {
			cases[i] = newCase(t)
		}
		var wg sync.WaitGroup
		errs := make(chan error, len(cases))
		for _, c := range cases {
			wg.Go(func() {
				if _, err := attest(attestCtx(t), c); err != nil {
					errs <- err
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Errorf("concurrent Attest error = %v", err)
		}
	})
}

// attest runs one attestation of c's good evidence.
func attest(ctx context.Context, c VerifierCase) (nodeattest.Result, error) {
	p, err := c.Attestor.Payload(ctx)
	if err != nil {
		return nodeattest.Result{}, err
	}
	return c.Verifier.Attest(ctx, p, &loopback{a: c.Attestor})
}

// attestCtx is the context an attestation runs in on both sides: it carries
// the agent's certificate request, as the server and the agent pass it
// (nodeattest.WithCSR), for methods that bind their proof to it.
func attestCtx(t *testing.T) context.Context {
	return nodeattest.WithCSR(t.Context(), []byte("conformance suite certificate request"))
}
