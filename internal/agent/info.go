package agent

import (
	"context"
	"net/url"

	"google.golang.org/grpc"

	agentv1 "github.com/signet-id/signet/internal/gen/signet/agent/v1"
	"github.com/signet-id/signet/internal/workload"
)

// maxBrokerURL bounds the advertised broker URL the agent keeps.
const maxBrokerURL = 2048

// learnBrokerURL keeps the broker URL from a Sync response. The response is
// untrusted input: anything but a bounded https URL with a host is dropped
// (and logged when it changes), so local workloads are never pointed at
// something the server did not plausibly mean.
func (a *Agent) learnBrokerURL(raw string) {
	if raw != "" {
		u, err := url.Parse(raw)
		if len(raw) > maxBrokerURL || err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil {
			if old := a.brokerURL.Load(); old == nil || *old != "" {
				a.log.Warn("ignoring the broker URL the server advertised: want https://HOST:PORT", "length", len(raw))
			}
			raw = ""
		}
	}
	if old := a.brokerURL.Load(); old != nil && *old == raw {
		return
	}
	a.brokerURL.Store(&raw)
	if raw != "" {
		a.log.Info("broker URL learned from the server", "broker_url", raw)
	}
}

// BrokerURL is the broker base URL the server advertised at the last
// successful sync, or "" when it advertised none.
func (a *Agent) BrokerURL() string {
	if p := a.brokerURL.Load(); p != nil {
		return *p
	}
	return ""
}

// infoService serves signet.agent.v1.AgentInfo on the Workload API socket:
// what a local workload may know of its agent (the broker URL for
// `signet credential get`, the trust domain, the agent's ID and version).
// None of it is secret; callers are identified like every Workload API
// caller, but need no entry.
type infoService struct {
	agentv1.UnimplementedAgentInfoServer
	a *Agent
}

func (s *infoService) ServiceName() string { return agentv1.AgentInfo_ServiceDesc.ServiceName }

func (s *infoService) Register(r grpc.ServiceRegistrar, _ workload.Host) {
	agentv1.RegisterAgentInfoServer(r, s)
}

func (s *infoService) GetInfo(context.Context, *agentv1.GetInfoRequest) (*agentv1.GetInfoResponse, error) {
	resp := &agentv1.GetInfoResponse{
		BrokerUrl:   s.a.BrokerURL(),
		TrustDomain: s.a.td.Name(),
		Version:     s.a.cfg.Version,
	}
	if id := s.a.ID(); !id.IsZero() {
		resp.AgentId = id.String()
	}
	return resp, nil
}

// WatchRevocations sends the SVID revocations the agent holds now and at
// every change, each message the complete set, until the caller goes away.
func (s *infoService) WatchRevocations(_ *agentv1.WatchRevocationsRequest, stream agentv1.AgentInfo_WatchRevocationsServer) error {
	for {
		list, changed := s.a.cache.revoked.list()
		if err := stream.Send(&agentv1.WatchRevocationsResponse{Revocations: list}); err != nil {
			return err
		}
		select {
		case <-stream.Context().Done():
			return nil
		case <-changed:
		}
	}
}
