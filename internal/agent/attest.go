package agent

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/signet-id/signet/internal/apiconv"
	"github.com/signet-id/signet/internal/errkind"
	agentv1 "github.com/signet-id/signet/internal/gen/signet/agent/v1"
	"github.com/signet-id/signet/internal/nodeattest"
)

// maxChallenges bounds the challenge rounds of one attestation.
const maxChallenges = 16

// loadOrAttest returns the persisted agent SVID when it is valid, and
// otherwise attests the node, retrying while the server is unreachable. It
// also returns when a fresh SVID was received (zero for a persisted one).
func (a *Agent) loadOrAttest(ctx context.Context, dir *dataDir) (*x509svid.SVID, time.Time, error) {
	svid, err := dir.loadAgentSVID(a.td, a.cfg.Now())
	if err != nil {
		a.log.Warn("ignoring persisted agent svid", logKeyError, err)
	}
	if svid != nil {
		a.log.Info("using persisted agent svid", logKeyAgentID, svid.ID.String())
		return svid, time.Time{}, nil
	}
	if a.attestor == nil {
		return nil, time.Time{}, fmt.Errorf("no valid agent SVID in %s and no --join-token given", a.cfg.DataDir)
	}
	bo := retryBackoff{base: time.Second, max: a.cfg.MaxBackoff}
	warned := false
	deadline := a.cfg.Now().Add(a.cfg.AttestTimeout)
	for {
		svid, bundle, err := a.attest(ctx)
		if err == nil {
			a.log.Info("node attested", logKeyAgentID, svid.ID.String(), "method", a.attestor.Name())
			if err := dir.saveAgentSVID(svid); err != nil {
				return nil, time.Time{}, err // without it a restart would need a new token
			}
			if bundle != nil {
				a.installBundle(dir, bundle)
			}
			return svid, a.cfg.Now(), nil
		}
		if !errkind.Is(err, errkind.Unavailable) || ctx.Err() != nil {
			return nil, time.Time{}, err
		}
		if untrustedServer(err) {
			return nil, time.Time{}, fmt.Errorf("the server at %s is not trusted: its certificate does not verify against the trust bundle "+
				"(is the bundle the output of `signet bundle show` on this server?): %w", a.cfg.ServerAddress, err)
		}
		if !a.cfg.Now().Before(deadline) {
			return nil, time.Time{}, fmt.Errorf("cannot reach the server at %s to attest (gave up after %s): %w", a.cfg.ServerAddress, a.cfg.AttestTimeout, err)
		}
		if !warned {
			a.log.Warn("cannot reach the server to attest; retrying", logKeyError, err)
			warned = true
		}
		t := time.NewTimer(bo.next())
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, time.Time{}, ctx.Err()
		case <-t.C:
		}
	}
}

// untrustedServer reports a TLS failure verifying the server: a
// misconfiguration that retrying does not mend.
func untrustedServer(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "authentication handshake failed") &&
		(strings.Contains(msg, "x509") || strings.Contains(msg, "certificate"))
}

// attest runs one AttestAgent exchange and returns the agent SVID, with the
// bundle the server sent (nil if none).
func (a *Agent) attest(ctx context.Context) (*x509svid.SVID, *spiffebundle.Bundle, error) {
	key, csr, err := newKeyAndCSR()
	if err != nil {
		return nil, nil, fmt.Errorf("attest node: %w", err)
	}
	payload, err := a.attestor.Payload(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("attest node: %s payload: %w", a.attestor.Name(), err)
	}
	api, closeConn, err := a.client.attestAPI()
	if err != nil {
		return nil, nil, fmt.Errorf("attest node: %w", err)
	}
	defer closeConn()
	ctx, cancel := context.WithTimeout(ctx, a.cfg.RPCTimeout)
	defer cancel()
	stream, err := api.AttestAgent(ctx)
	if err != nil {
		return nil, nil, rpcErr("attest node", err)
	}
	err = stream.Send(&agentv1.AttestAgentRequest{Step: &agentv1.AttestAgentRequest_Params{Params: &agentv1.AttestParams{
		AttestationType: a.attestor.Name(),
		Payload:         payload,
		Csr:             csr,
	}}})
	if err != nil {
		_, err = stream.Recv() // the stream's status says why Send failed
		return nil, nil, rpcErr("attest node", err)
	}
	for round := 0; ; round++ {
		resp, err := stream.Recv()
		if err != nil {
			return nil, nil, rpcErr("attest node", err)
		}
		switch step := resp.GetStep().(type) {
		case *agentv1.AttestAgentResponse_Result:
			_ = stream.CloseSend()
			svid, bundle, err := a.parseAgentSVID(step.Result, key)
			if err != nil {
				return nil, nil, fmt.Errorf("attest node: %w", err)
			}
			return svid, bundle, nil
		case *agentv1.AttestAgentResponse_Challenge:
			r, ok := a.attestor.(nodeattest.Responder)
			if !ok {
				return nil, nil, fmt.Errorf("attest node: the server sent a challenge, which %s attestation cannot answer", a.attestor.Name())
			}
			if round >= maxChallenges {
				return nil, nil, fmt.Errorf("attest node: more than %d challenges", maxChallenges)
			}
			answer, err := r.Respond(ctx, step.Challenge)
			if err != nil {
				return nil, nil, fmt.Errorf("attest node: answer challenge: %w", err)
			}
			if err := stream.Send(&agentv1.AttestAgentRequest{Step: &agentv1.AttestAgentRequest_ChallengeResponse{ChallengeResponse: answer}}); err != nil {
				_, err = stream.Recv()
				return nil, nil, rpcErr("attest node", err)
			}
		default:
			return nil, nil, errors.New("attest node: the server sent an empty response")
		}
	}
}

// parseAgentSVID checks an agent SVID the server issued for key: a valid
// chain to the bundle it came with (or the current one), an ID in the
// agent's trust domain equal to the one announced, and a leaf certifying
// key. It returns the SVID and the bundle that came with it, if any.
func (a *Agent) parseAgentSVID(pb *agentv1.AgentSVID, key crypto.Signer) (*x509svid.SVID, *spiffebundle.Bundle, error) {
	if pb == nil {
		return nil, nil, errors.New("no agent svid in the response")
	}
	var bundle *spiffebundle.Bundle
	verifyWith := a.cache.Bundle()
	if pb.GetBundle() != nil {
		b, err := apiconv.BundleFromProto(pb.GetBundle())
		if err != nil {
			return nil, nil, fmt.Errorf("agent svid bundle: %w", err)
		}
		if b.TrustDomain() != a.td || len(b.X509Authorities()) == 0 {
			return nil, nil, fmt.Errorf("agent svid bundle: want x509 authorities of %s", a.td)
		}
		bundle, verifyWith = b, b
	}
	certs, err := parseChain(pb.GetCertChain())
	if err != nil {
		return nil, nil, fmt.Errorf("agent svid: %w", err)
	}
	id, _, err := x509svid.Verify(certs, verifyWith, x509svid.WithTime(a.cfg.Now()))
	if err != nil {
		return nil, nil, fmt.Errorf("agent svid: %w", err)
	}
	if !id.MemberOf(a.td) || (pb.GetSpiffeId() != "" && pb.GetSpiffeId() != id.String()) {
		return nil, nil, fmt.Errorf("agent svid is for %s, announced as %q in trust domain %s", id, pb.GetSpiffeId(), a.td)
	}
	if !publicKeyEqual(certs[0].PublicKey, key.Public()) {
		return nil, nil, errors.New("agent svid certifies another key than the one requested")
	}
	return &x509svid.SVID{ID: id, Certificates: certs, PrivateKey: key}, bundle, nil
}

// installBundle makes b the current bundle and persists it.
func (a *Agent) installBundle(dir *dataDir, b *spiffebundle.Bundle) {
	if !a.cache.setBundle(b) {
		return
	}
	seq, _ := b.SequenceNumber()
	a.log.Info("trust bundle updated", "sequence", seq, "x509_authorities", len(b.X509Authorities()))
	if err := dir.saveBundle(b); err != nil {
		a.log.Error("cannot persist trust bundle: a restart will fall back to the previous one", logKeyError, err)
	}
	a.cache.broadcast()
}

// renewLoop renews the agent SVID at half its lifetime, or at once when
// another loop saw the server refuse the agent. It returns ErrEvicted when
// the server refuses the renewal, and an error when the SVID expires before
// it could be renewed.
func (a *Agent) renewLoop(ctx context.Context, dir *dataDir) error {
	bo := retryBackoff{base: time.Second, max: a.cfg.MaxBackoff}
	failing, renewed := false, false
	for {
		leaf := a.svid.p.Load().Certificates[0]
		wait := time.Unix(0, a.renewAt.Load()).Sub(a.cfg.Now())
		switch {
		case failing:
			wait = bo.next()
		case renewed:
			// A server handing out nearly expired SVIDs (its CA is about
			// to expire) must not make the agent renew in a tight loop.
			wait = max(wait, minRenewInterval)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		case <-a.renewNow:
			t.Stop()
			a.log.Info("server refused the agent svid: renewing it to tell eviction from a stale connection")
		}
		err := a.renewAgent(ctx, dir)
		renewed = err == nil
		switch {
		case err == nil:
			failing = false
			bo.reset()
		case ctx.Err() != nil:
			return nil
		case denied(err):
			return a.evicted(dir, err)
		case !a.cfg.Now().Before(leaf.NotAfter):
			if rmErr := dir.removeAgentSVID(); rmErr != nil {
				a.log.Error("cannot remove expired agent svid", logKeyError, rmErr)
			}
			return fmt.Errorf("agent svid expired at %s before it could be renewed (%w): re-attest the node with a new join token",
				leaf.NotAfter.UTC().Format(time.RFC3339), err)
		default:
			if !failing {
				a.log.Warn("cannot renew agent svid; retrying", logKeyError, err,
					logKeyNotAfter, leaf.NotAfter.UTC().Format(time.RFC3339))
			}
			failing = true
		}
	}
}

// minRenewInterval is the least time between two agent SVID renewals.
const minRenewInterval = time.Second

// renewTime is half-way through a certificate's lifetime, counted from
// when the agent received it (zero when unknown, as for an SVID loaded from
// disk) if that is later than NotBefore: servers backdate NotBefore for
// clock skew, and with short lifetimes the half-way point computed from it
// could already have passed on receipt.
func renewTime(notBefore, notAfter, received time.Time) time.Time {
	from := notBefore
	if received.After(from) {
		from = received
	}
	return from.Add(notAfter.Sub(from) / 2)
}

// renewAgent gets a fresh agent SVID for a fresh key, persists it and moves
// the connection over to it.
func (a *Agent) renewAgent(ctx context.Context, dir *dataDir) error {
	a.lastRenewal.Store(a.cfg.Now().UnixNano())
	key, csr, err := newKeyAndCSR()
	if err != nil {
		return fmt.Errorf("renew agent svid: %w", err)
	}
	var resp *agentv1.RenewAgentResponse
	err = a.client.call(func(api agentv1.AgentClient) error {
		cctx, cancel := context.WithTimeout(ctx, a.cfg.RPCTimeout)
		defer cancel()
		resp, err = api.RenewAgent(cctx, &agentv1.RenewAgentRequest{Csr: csr})
		return err
	})
	if err != nil {
		return rpcErr("renew agent svid", err)
	}
	svid, bundle, err := a.parseAgentSVID(resp.GetSvid(), key)
	if err != nil {
		return fmt.Errorf("renew agent svid: %w", err)
	}
	if cur := a.svid.p.Load(); svid.ID != cur.ID {
		return fmt.Errorf("renew agent svid: the server issued %s, want %s", svid.ID, cur.ID)
	}
	// The server now accepts only the new SVID: use it even if it cannot
	// be persisted, and say so loudly.
	a.setSVID(svid, a.cfg.Now())
	a.client.reconnect()
	if err := dir.saveAgentSVID(svid); err != nil {
		a.log.Error("cannot persist renewed agent svid: a restart will present a refused svid", logKeyError, err)
	}
	if bundle != nil {
		a.installBundle(dir, bundle)
	}
	a.log.Info("agent svid renewed", logKeyAgentID, svid.ID.String(),
		logKeyNotAfter, svid.Certificates[0].NotAfter.UTC().Format(time.RFC3339))
	return nil
}

// requestRenewal asks renewLoop to renew now, after the server refused the
// agent's SVID on another call. Refusals during or right after a renewal
// are calls that raced it on the old connection and are ignored.
func (a *Agent) requestRenewal() {
	last := time.Unix(0, a.lastRenewal.Load())
	if a.cfg.Now().Sub(last) < 2*a.cfg.SyncInterval {
		return
	}
	select {
	case a.renewNow <- struct{}{}:
	default:
	}
}

// evicted handles the server's refusal of the agent: log, forget the
// persisted SVID, and return ErrEvicted.
func (a *Agent) evicted(dir *dataDir, cause error) error {
	a.log.Error("agent was evicted or banned: re-attest the node with a new join token", logKeyError, cause)
	if err := dir.removeAgentSVID(); err != nil {
		a.log.Error("cannot remove refused agent svid", logKeyError, err)
	}
	return fmt.Errorf("%w (%v)", ErrEvicted, cause)
}

// signJWT asks the server for a JWT-SVID; it is the cache's jwtSignFunc.
func (a *Agent) signJWT(ctx context.Context, entryID string, audience []string) (string, time.Time, error) {
	if a.svid.p.Load() == nil {
		return "", time.Time{}, errkind.New(errkind.Unavailable, "agent is not attested yet")
	}
	var resp *agentv1.SignJWTSVIDResponse
	err := a.client.call(func(api agentv1.AgentClient) (err error) {
		cctx, cancel := context.WithTimeout(ctx, a.cfg.RPCTimeout)
		defer cancel()
		resp, err = api.SignJWTSVID(cctx, &agentv1.SignJWTSVIDRequest{EntryId: entryID, Audience: audience})
		return err
	})
	if err != nil {
		return "", time.Time{}, errkind.FromGRPC(err)
	}
	var exp time.Time
	if resp.GetExpiresAt() > 0 {
		exp = time.Unix(resp.GetExpiresAt(), 0)
	}
	return resp.GetToken(), exp, nil
}
