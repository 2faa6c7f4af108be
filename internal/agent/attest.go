package agent

import (
	"context"
	"crypto"
	"errors"
	"fmt"
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

// loadOrAttest returns the persisted agent SVID, valid or expired (an
// expired one is re-established by renewLoop), and otherwise attests the
// node with the configured attestor, retrying while the server is
// unreachable. It also returns when a fresh SVID was received (zero for a
// persisted one).
func (a *Agent) loadOrAttest(ctx context.Context, dir *dataDir) (*x509svid.SVID, time.Time, error) {
	svid, err := dir.loadAgentSVID(a.td)
	if err != nil {
		a.log.Warn("ignoring persisted agent svid", logKeyError, err)
	}
	if svid != nil {
		if leaf := svid.Certificates[0]; !a.cfg.Clock.Now().Before(leaf.NotAfter) {
			a.log.Warn("persisted agent svid has expired: the agent re-establishes the node with its key once the server answers (agent_reauth)",
				logKeyAgentID, svid.ID.String(), logKeyNotAfter, leaf.NotAfter.UTC().Format(time.RFC3339))
		} else {
			a.log.Info("using persisted agent svid", logKeyAgentID, svid.ID.String())
		}
		return svid, time.Time{}, nil
	}
	if a.attestor == nil {
		return nil, time.Time{}, fmt.Errorf("no agent SVID in %s and no --join-token given", a.cfg.DataDir)
	}
	bo := retryBackoff{base: time.Second, max: a.cfg.MaxBackoff}
	warned := false
	deadline := a.cfg.Clock.Now().Add(a.cfg.AttestTimeout)
	for {
		start := time.Now()
		svid, bundle, err := a.attest(ctx, a.attestor)
		since(&a.timings.attest, start)
		if err == nil {
			a.log.Info("node attested", logKeyAgentID, svid.ID.String(), "method", a.attestor.Name())
			if err := dir.saveAgentSVID(svid); err != nil {
				return nil, time.Time{}, err // without it a restart would need a new token
			}
			if bundle != nil {
				a.installBundle(dir, bundle)
			}
			return svid, a.cfg.Clock.Now(), nil
		}
		if !errkind.Is(err, errkind.Unavailable) || ctx.Err() != nil {
			return nil, time.Time{}, err
		}
		if untrustedServer(err) {
			return nil, time.Time{}, fmt.Errorf("the server at %s is not trusted: its certificate does not verify against the trust bundle "+
				"(is the bundle the output of `signet bundle show` on this server?): %w", a.cfg.ServerAddress, err)
		}
		if !a.cfg.Clock.Now().Before(deadline) {
			return nil, time.Time{}, fmt.Errorf("cannot reach the server at %s to attest (gave up after %s): %w", a.cfg.ServerAddress, a.cfg.AttestTimeout, err)
		}
		if !warned {
			a.log.Warn("cannot reach the server to attest; retrying", logKeyError, err)
			warned = true
		}
		select {
		case <-ctx.Done():
			return nil, time.Time{}, ctx.Err()
		case <-a.cfg.Clock.After(bo.next()):
		}
	}
}

// attest runs one AttestAgent exchange with attestor and returns the agent
// SVID, with the bundle the server sent (nil if none). The CSR travels in
// the context of Payload and Respond (nodeattest.WithCSR), so methods can
// bind their proof to the key being certified.
func (a *Agent) attest(ctx context.Context, attestor nodeattest.Attestor) (*x509svid.SVID, *spiffebundle.Bundle, error) {
	key, csr, err := newKeyAndCSR()
	if err != nil {
		return nil, nil, fmt.Errorf("attest node: %w", err)
	}
	ctx = nodeattest.WithCSR(ctx, csr)
	payload, err := attestor.Payload(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("attest node: %s payload: %w", attestor.Name(), err)
	}
	api, rec, closeConn, err := a.client.attestAPI()
	if err != nil {
		return nil, nil, fmt.Errorf("attest node: %w", err)
	}
	defer closeConn()
	fail := func(err error) error { return withHandshake(rpcErr("attest node", err), rec) }
	ctx, cancel := context.WithTimeout(ctx, a.cfg.RPCTimeout)
	defer cancel()
	stream, err := api.AttestAgent(ctx)
	if err != nil {
		return nil, nil, fail(err)
	}
	err = stream.Send(&agentv1.AttestAgentRequest{Step: &agentv1.AttestAgentRequest_Params{Params: &agentv1.AttestParams{
		AttestationType: attestor.Name(),
		Payload:         payload,
		Csr:             csr,
	}}})
	if err != nil {
		_, err = stream.Recv() // the stream's status says why Send failed
		return nil, nil, fail(err)
	}
	for round := 0; ; round++ {
		resp, err := stream.Recv()
		if err != nil {
			return nil, nil, fail(err)
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
			r, ok := attestor.(nodeattest.Responder)
			if !ok {
				return nil, nil, fmt.Errorf("attest node: the server sent a challenge, which %s attestation cannot answer", attestor.Name())
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
				return nil, nil, fail(err)
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
	id, _, err := x509svid.Verify(certs, verifyWith, x509svid.WithTime(a.cfg.Clock.Now()))
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
