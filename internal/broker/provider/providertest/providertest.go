// Package providertest is the conformance suite every credential provider
// passes: a credential is issued and works, is revoked and (where the
// provider can recall it) stops working and leaves nothing at the target,
// expires, and survives a crash between the broker's steps (a Revoke that
// carries nothing but the lease id still removes what Issue made). Run it
// through the registry, building the provider exactly as the server does:
//
//	providertest.Run(t, func(t *testing.T) providertest.Harness { … })
package providertest

import (
	"context"
	"crypto/rand"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-id/signet/internal/broker/provider"
)

// Harness is one provider under test and how to observe its target.
type Harness struct {
	Provider   provider.Provider
	Credential string
	// Use authenticates at the target with c (connects and runs a query);
	// nil error means the credential works.
	Use func(ctx context.Context, c provider.Credential) error
	// Exists reports whether anything of the lease remains at the target
	// (a role); nil when the target keeps nothing per lease.
	Exists func(ctx context.Context, leaseID string) (bool, error)
	// EnforcesExpiry is set when the target itself refuses a credential
	// after the lease's end, before any Revoke.
	EnforcesExpiry bool
	// Prepare, when set, completes each request before Issue (the ssh
	// provider certifies a public key the client generated).
	Prepare func(r *provider.Request)
	// PendingOutlives, when set, says why a credential whose lease was
	// left pending (revoked with nothing but the lease id) cannot be
	// recalled, and how long it lives on (github_app: GitHub cannot list
	// installation tokens; they expire within an hour). The crash test then
	// checks only that such a Revoke succeeds.
	PendingOutlives string
}

// Run runs the suite; open builds a fresh harness per subtest.
func Run(t *testing.T, open func(t *testing.T) Harness) {
	tests := map[string]func(t *testing.T, h Harness){
		"IssueUseRevoke":     testIssueUseRevoke,
		"RevokeIsIdempotent": testRevokeIdempotent,
		"CrashBetweenSteps":  testCrashBetweenSteps,
		"Expire":             testExpire,
		"FailedIssueIsClean": testFailedIssue,
		"ConcurrentLeases":   testConcurrent,
		"RenewExtends":       testRenew,
		"ContextDoesNotLeak": testNoContextInData,
	}
	for name, fn := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			fn(t, open(t))
		})
	}
}

func leaseID() string {
	return "lease-" + rand.Text()
}

func request(h Harness, id string, ttl time.Duration) provider.Request {
	r := provider.Request{
		LeaseID: id, Credential: h.Credential,
		Subject: spiffeid.RequireFromString("spiffe://example.org/etl"),
		Node:    spiffeid.RequireFromString("spiffe://example.org/node/a"),
		Context: map[string]any{"ticket": "CHG-1"}, ExpiresAt: time.Now().Add(ttl),
	}
	if h.Prepare != nil {
		h.Prepare(&r)
	}
	return r
}

func issue(t *testing.T, h Harness, id string, ttl time.Duration) provider.Credential {
	t.Helper()
	c, err := h.Provider.Issue(t.Context(), request(h, id, ttl))
	if err != nil {
		t.Fatalf("Issue(%s) error = %v", id, err)
	}
	if len(c.Data) == 0 {
		t.Fatalf("Issue(%s) returned no data", id)
	}
	return c
}

func wantUse(t *testing.T, h Harness, c provider.Credential, works bool, when string) {
	t.Helper()
	err := h.Use(t.Context(), c)
	if works && err != nil {
		t.Fatalf("Use %s error = %v, want the credential to work", when, err)
	}
	if !works && err == nil {
		t.Fatalf("Use %s succeeded, want the credential refused", when)
	}
}

func wantGone(t *testing.T, h Harness, id, when string) {
	t.Helper()
	if h.Exists == nil {
		return
	}
	ok, err := h.Exists(t.Context(), id)
	if err != nil {
		t.Fatalf("Exists(%s) error = %v", id, err)
	}
	if ok {
		t.Fatalf("lease %s still exists at the target %s", id, when)
	}
}

func testIssueUseRevoke(t *testing.T, h Harness) {
	id := leaseID()
	c := issue(t, h, id, time.Hour)
	wantUse(t, h, c, true, "after Issue")
	if err := h.Provider.Revoke(t.Context(), provider.Ref{LeaseID: id, Credential: h.Credential, RevokeData: c.RevokeData}); err != nil {
		t.Fatalf("Revoke error = %v", err)
	}
	if provider.Recalls(h.Provider) {
		wantUse(t, h, c, false, "after Revoke")
		wantGone(t, h, id, "after Revoke")
	}
}

func testRevokeIdempotent(t *testing.T, h Harness) {
	id := leaseID()
	c := issue(t, h, id, time.Hour)
	ref := provider.Ref{LeaseID: id, Credential: h.Credential, RevokeData: c.RevokeData}
	for i := range 2 {
		if err := h.Provider.Revoke(t.Context(), ref); err != nil {
			t.Fatalf("Revoke #%d error = %v", i+1, err)
		}
	}
	if err := h.Provider.Revoke(t.Context(), provider.Ref{LeaseID: leaseID(), Credential: h.Credential}); err != nil {
		t.Fatalf("Revoke(never issued) error = %v, want nil", err)
	}
}

// testCrashBetweenSteps issues, loses the revocation data (the broker died
// before activating the lease) and reconciles with the lease id alone.
func testCrashBetweenSteps(t *testing.T, h Harness) {
	id := leaseID()
	c := issue(t, h, id, time.Hour)
	if err := h.Provider.Revoke(t.Context(), provider.Ref{LeaseID: id, Credential: h.Credential}); err != nil {
		t.Fatalf("Revoke(lease id only) error = %v", err)
	}
	if h.PendingOutlives != "" {
		t.Logf("not recalled after a crash: %s", h.PendingOutlives)
		return
	}
	if provider.Recalls(h.Provider) {
		wantUse(t, h, c, false, "after reconciling a pending lease")
		wantGone(t, h, id, "after reconciling a pending lease")
	}
}

func testExpire(t *testing.T, h Harness) {
	id := leaseID()
	ttl := 2 * time.Second
	c := issue(t, h, id, ttl)
	wantUse(t, h, c, true, "before expiry")
	time.Sleep(ttl + 500*time.Millisecond)
	if h.EnforcesExpiry {
		wantUse(t, h, c, false, "after expiry (before any Revoke)")
	}
	// What the sweeper does on expiry.
	if err := h.Provider.Revoke(t.Context(), provider.Ref{LeaseID: id, Credential: h.Credential, RevokeData: c.RevokeData}); err != nil {
		t.Fatalf("Revoke(expired) error = %v", err)
	}
	if provider.Recalls(h.Provider) {
		wantGone(t, h, id, "after the sweeper revoked it")
	}
}

func testFailedIssue(t *testing.T, h Harness) {
	id := leaseID()
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := h.Provider.Issue(ctx, request(h, id, time.Hour)); err == nil {
		// A provider that needs no I/O may succeed; then it must be revocable.
		if err := h.Provider.Revoke(t.Context(), provider.Ref{LeaseID: id, Credential: h.Credential}); err != nil {
			t.Fatalf("Revoke error = %v", err)
		}
		return
	}
	wantGone(t, h, id, "after a failed Issue")
}

func testConcurrent(t *testing.T, h Harness) {
	const n = 6
	creds := make([]provider.Credential, n)
	ids := make([]string, n)
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		ids[i] = leaseID()
		wg.Go(func() {
			creds[i], errs[i] = h.Provider.Issue(t.Context(), request(h, ids[i], time.Hour))
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("Issue #%d error = %v", i, err)
		}
	}
	seen := map[string]bool{}
	for i, c := range creds {
		wantUse(t, h, c, true, "of a concurrent lease")
		if u := c.Data["username"]; u != "" {
			if seen[u] {
				t.Errorf("two leases got username %q", u)
			}
			seen[u] = true
		}
		if err := h.Provider.Revoke(t.Context(), provider.Ref{LeaseID: ids[i], Credential: h.Credential, RevokeData: c.RevokeData}); err != nil {
			t.Fatalf("Revoke error = %v", err)
		}
	}
	// Revoking one lease leaves the others alone: checked by Use above,
	// in order, before each one's own Revoke.
}

func testRenew(t *testing.T, h Harness) {
	r, ok := h.Provider.(provider.Renewer)
	if !ok {
		t.Skip("provider does not renew")
	}
	id := leaseID()
	ttl := 2 * time.Second
	c := issue(t, h, id, ttl)
	ref := provider.Ref{LeaseID: id, Credential: h.Credential, RevokeData: c.RevokeData}
	if err := r.Renew(t.Context(), ref, time.Now().Add(time.Hour)); err != nil {
		t.Fatalf("Renew error = %v", err)
	}
	time.Sleep(ttl + 500*time.Millisecond)
	wantUse(t, h, c, true, "after the original expiry of a renewed lease")
	if err := h.Provider.Revoke(t.Context(), ref); err != nil {
		t.Fatalf("Revoke error = %v", err)
	}
}

// testNoContextInData checks that caller-controlled context never reaches
// the issued data (names cannot be injected through it).
func testNoContextInData(t *testing.T, h Harness) {
	id := leaseID()
	req := request(h, id, time.Hour)
	req.Context = map[string]any{"ticket": `x"; DROP ROLE postgres; --`}
	c, err := h.Provider.Issue(t.Context(), req)
	if err != nil {
		t.Fatalf("Issue error = %v", err)
	}
	for k, v := range c.Data {
		if v == req.Context["ticket"] {
			t.Errorf("data[%s] carries the request context", k)
		}
	}
	_ = h.Provider.Revoke(t.Context(), provider.Ref{LeaseID: id, Credential: h.Credential, RevokeData: c.RevokeData})
}
