package agentapi

import (
	"context"
	"errors"
	"io"
	"strings"
	"time"

	"google.golang.org/grpc"

	"github.com/signet-id/signet/internal/ca"
	"github.com/signet-id/signet/internal/errkind"
	agentv1 "github.com/signet-id/signet/internal/gen/signet/agent/v1"
	"github.com/signet-id/signet/internal/logsafe"
	"github.com/signet-id/signet/internal/model"
	"github.com/signet-id/signet/internal/nodeattest"
	"github.com/signet-id/signet/internal/store"
)

// errAttestFailed is the one answer every refused attestation gets: callers
// never learn which check failed. The log says why.
var errAttestFailed = errkind.New(errkind.PermissionDenied, "node attestation failed")

// errBusy turns callers away when attestations are already at capacity.
var errBusy = errkind.New(errkind.Unavailable, "the server is busy attesting other nodes: retry shortly")

// AttestAgent admits a node. The first message carries the method, its
// evidence and the CSR of the agent SVID. The CSR is checked first and the
// method's verifier runs only then, so evidence that can be used once (a
// join token) is never spent on a request that cannot succeed; the
// verifier may exchange challenge rounds on the stream. The node is then
// recorded with the selectors the method proved, and its agent SVID sent.
func (s *Service) AttestAgent(stream grpc.BidiStreamingServer[agentv1.AttestAgentRequest, agentv1.AttestAgentResponse]) error {
	ctx, cancel := context.WithTimeout(stream.Context(), s.cfg.AttestTimeout)
	defer cancel()
	select {
	case s.attestSem <- struct{}{}:
		defer func() { <-s.attestSem }()
	case <-time.After(time.Second):
		s.met.attestations.WithLabelValues("", "busy").Inc()
		return errBusy
	case <-ctx.Done():
		return ctx.Err()
	}
	req, err := stream.Recv()
	if errors.Is(err, io.EOF) {
		return errkind.New(errkind.InvalidArgument, "attestation params are required")
	}
	if err != nil {
		return err
	}
	params := req.GetParams()
	if params == nil {
		return errkind.New(errkind.InvalidArgument, "the first attestation message must carry params")
	}
	method := params.GetAttestationType()
	v, ok := s.verifiers[method]
	if !ok {
		s.met.attestations.WithLabelValues("unknown", "denied").Inc()
		return errkind.New(errkind.InvalidArgument, "attestation_type %q is not enabled on this server: it accepts %s",
			logsafe.Truncate(method), strings.Join(s.MethodNames(), ", "))
	}
	if len(params.GetCsr()) == 0 {
		return errkind.New(errkind.InvalidArgument, "params.csr is required")
	}
	if _, err := ca.ParseCSR(params.GetCsr()); err != nil {
		s.met.attestations.WithLabelValues(method, "denied").Inc()
		return err
	}
	if len(params.GetPayload()) > nodeattest.MaxPayloadSize {
		s.met.attestations.WithLabelValues(method, "denied").Inc()
		return errkind.New(errkind.InvalidArgument, "params.payload is %d bytes: at most %d", len(params.GetPayload()), nodeattest.MaxPayloadSize)
	}
	res, err := v.Attest(nodeattest.WithCSR(ctx, params.GetCsr()), params.GetPayload(), &streamChallenger{stream: stream})
	if err == nil {
		err = s.checkResult(method, res)
	}
	if err != nil {
		if k := errkind.Of(err); k == errkind.PermissionDenied || k == errkind.InvalidArgument || k == errkind.NotFound {
			s.met.attestations.WithLabelValues(method, "denied").Inc()
			s.log.Warn("node attestation denied", "method", method, "reason", err)
			return errAttestFailed
		}
		s.met.attestations.WithLabelValues(method, "error").Inc()
		return err
	}
	svid, err := s.admit(ctx, method, res, params.GetCsr())
	if err != nil {
		s.met.attestations.WithLabelValues(method, "error").Inc()
		return err
	}
	s.met.attestations.WithLabelValues(method, "ok").Inc()
	s.log.Info("node attested", "agent_id", res.AgentID.String(), "method", method, "selectors", len(res.Selectors))
	return stream.Send(&agentv1.AttestAgentResponse{Step: &agentv1.AttestAgentResponse_Result{Result: svid}})
}

// checkResult refuses what no verifier may grant: an ID outside the trust
// domain or the server's own, and malformed selectors.
func (s *Service) checkResult(method string, res nodeattest.Result) error {
	switch {
	case res.AgentID.IsZero():
		return errkind.New(errkind.PermissionDenied, "%s granted no agent id", method)
	case !res.AgentID.MemberOf(s.cfg.TrustDomain):
		return errkind.New(errkind.PermissionDenied, "%s granted %s, outside trust domain %s", method, logsafe.Truncate(res.AgentID.String()), s.cfg.TrustDomain.Name())
	case res.AgentID == s.cfg.ServerID || res.AgentID.Path() == "":
		return errkind.New(errkind.PermissionDenied, "%s granted the reserved id %s", method, logsafe.Truncate(res.AgentID.String()))
	}
	for _, sel := range res.Selectors {
		if err := sel.Validate(); err != nil {
			return errkind.New(errkind.PermissionDenied, "%s returned a malformed selector: %v", method, err)
		}
	}
	return nil
}

// admit signs the agent SVID and records the node: a new node is created,
// a known one re-admitted (every SVID it held before is void), and a banned
// one refused, atomically with the ban check. A result re-establishing an
// existing node (agent_reauth) is recorded as a renewal instead: nothing
// else of the node changes, its current SVID stays valid until the new one
// is first used, and an evicted or banned node is refused.
func (s *Service) admit(ctx context.Context, method string, res nodeattest.Result, csr []byte) (*agentv1.AgentSVID, error) {
	id := res.AgentID
	ctx = store.WithActor(ctx, "agent:"+id.String())
	chain, err := s.cfg.CA.SignX509SVID(ctx, csr, ca.X509Params{ID: id, TTL: s.cfg.AgentTTL})
	if err != nil {
		return nil, err
	}
	if res.Existing {
		err = s.cfg.Store.RenewNodeSVID(ctx, id, serialOf(chain[0]), chain[0].NotAfter)
		if errkind.Is(err, errkind.NotFound) {
			s.log.Warn("node attestation denied: node evicted meanwhile", "agent_id", id.String(), "method", method)
			return nil, errAttestFailed
		}
	} else {
		n := model.Node{
			SPIFFEID: id, AttestationType: method, Selectors: res.Selectors,
			SerialNumber: serialOf(chain[0]), CertNotAfter: chain[0].NotAfter,
		}
		if res.FirstUseOnly {
			_, err = s.cfg.Store.AdmitNewNode(ctx, n)
			if errkind.Is(err, errkind.AlreadyExists) {
				s.log.Warn("node attestation denied: trust-on-first-use identity already attested", "agent_id", logsafe.Truncate(id.String()), "method", method)
				return nil, errAttestFailed
			}
		} else {
			_, err = s.cfg.Store.AdmitNode(ctx, n)
		}
	}
	if errkind.Is(err, errkind.PermissionDenied) {
		s.log.Warn("node attestation denied: node is banned or its id is an entry's", "agent_id", logsafe.Truncate(id.String()), "method", method, "reason", err)
		return nil, errAttestFailed
	}
	if err != nil {
		return nil, err
	}
	return s.agentSVID(id, chain)
}

// streamChallenger runs a verifier's challenge rounds on the stream.
type streamChallenger struct {
	stream grpc.BidiStreamingServer[agentv1.AttestAgentRequest, agentv1.AttestAgentResponse]
	rounds int
}

func (c *streamChallenger) Challenge(ctx context.Context, challenge []byte) ([]byte, error) {
	if c.rounds >= nodeattest.MaxChallengeRounds {
		return nil, errkind.New(errkind.PermissionDenied, "more than %d challenge rounds", nodeattest.MaxChallengeRounds)
	}
	c.rounds++
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := c.stream.Send(&agentv1.AttestAgentResponse{Step: &agentv1.AttestAgentResponse_Challenge{Challenge: challenge}}); err != nil {
		return nil, err
	}
	req, err := c.stream.Recv()
	if err != nil {
		return nil, err
	}
	answer, ok := req.GetStep().(*agentv1.AttestAgentRequest_ChallengeResponse)
	if !ok {
		return nil, errkind.New(errkind.InvalidArgument, "expected a challenge response")
	}
	if len(answer.ChallengeResponse) > nodeattest.MaxPayloadSize {
		return nil, errkind.New(errkind.InvalidArgument, "challenge response is %d bytes: at most %d", len(answer.ChallengeResponse), nodeattest.MaxPayloadSize)
	}
	return answer.ChallengeResponse, nil
}
