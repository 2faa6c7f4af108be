package gateway

import (
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-id/signet/internal/broker/policy"
	"github.com/signet-id/signet/internal/config"
)

// Protocols of a route.
const (
	ProtocolHTTP = "http"
	ProtocolTCP  = "tcp"
)

// Config is gateway.yaml. Unknown keys are errors; see docs/gateway.md.
type Config struct {
	// AgentSocket is the agent's Workload API socket path; empty means
	// $SPIFFE_ENDPOINT_SOCKET, else the agent's default.
	AgentSocket string    `yaml:"agent_socket"`
	Ingress     []Ingress `yaml:"ingress"`
	Egress      []Egress  `yaml:"egress"`
}

// Ingress terminates SPIFFE mTLS on Listen and forwards to Forward, a plain
// TCP address, what peers allowed by Allow send: HTTP requests (protocol
// http, with X-Forwarded-Client-Spiffe-Id) or bytes (protocol tcp). A peer
// is allowed when any rule of Allow is true for its SPIFFE ID.
type Ingress struct {
	Listen   string   `yaml:"listen"`
	Forward  string   `yaml:"forward"`
	Protocol string   `yaml:"protocol"`
	Allow    []string `yaml:"allow"`

	rules []*policy.SubjectRule
}

// Egress listens on Listen (a loopback address) for the application's plain
// TCP connections and carries each over SPIFFE mTLS to Upstream, whose
// SPIFFE ID must be SPIFFEID. Only protocol tcp exists today.
type Egress struct {
	Listen   string `yaml:"listen"`
	Protocol string `yaml:"protocol"`
	Upstream string `yaml:"upstream"`
	SPIFFEID string `yaml:"spiffe_id"`

	id spiffeid.ID
}

// LoadConfig reads, validates and compiles a gateway configuration file.
func LoadConfig(path string) (*Config, error) {
	data, err := config.ReadFile("gateway config", path)
	if err != nil {
		return nil, err
	}
	c, err := ParseConfig(data)
	if err != nil {
		return nil, fmt.Errorf("gateway config %s: %w", path, err)
	}
	return c, nil
}

// ParseConfig strictly decodes a gateway configuration and compiles its
// allow rules: unknown keys name their line and the accepted keys, and
// every invalid field (a rule that does not compile included) is reported
// at once, naming its route.
func ParseConfig(data []byte) (*Config, error) {
	var c Config
	if err := config.DecodeDocument(data, &c, "set ingress or egress routes", "agent_socket, ingress, egress"); err != nil {
		return nil, err
	}
	return &c, nil
}

// Validate checks every route and compiles the allow rules; each problem
// names its route as ingress[i] (listen address).
func (c *Config) Validate() error {
	var errs []error
	if len(c.Ingress) == 0 && len(c.Egress) == 0 {
		errs = append(errs, errors.New("no routes: set ingress or egress"))
	}
	listens := map[string]string{}
	checkListen := func(route, addr string) {
		switch {
		case addr == "":
			errs = append(errs, fmt.Errorf("%s.listen: required: host:port to listen on", route))
		case !hostPort(addr):
			errs = append(errs, fmt.Errorf("%s.listen: %q is not host:port", route, addr))
		case listens[addr] != "" && !strings.HasSuffix(addr, ":0"):
			errs = append(errs, fmt.Errorf("%s.listen: %s is already used by %s", route, addr, listens[addr]))
		default:
			listens[addr] = route
		}
	}
	for i := range c.Ingress {
		r := &c.Ingress[i]
		route := fmt.Sprintf("ingress[%d]", i)
		checkListen(route, r.Listen)
		if r.Listen != "" {
			route = fmt.Sprintf("ingress[%d] (%s)", i, r.Listen)
		}
		if !hostPort(r.Forward) {
			errs = append(errs, fmt.Errorf("%s.forward: %q: want the application's host:port, such as 127.0.0.1:8080", route, r.Forward))
		}
		if r.Protocol != ProtocolHTTP && r.Protocol != ProtocolTCP {
			errs = append(errs, fmt.Errorf("%s.protocol: %q: use http or tcp", route, r.Protocol))
		}
		if len(r.Allow) == 0 {
			errs = append(errs, fmt.Errorf("%s.allow: required: at least one CEL rule on the peer's SPIFFE ID, such as 'subject.id == \"spiffe://example.org/web\"' (nothing is allowed by default)", route))
		}
		r.rules = nil
		for j, expr := range r.Allow {
			rule, err := policy.CompileSubjectRule(expr)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s.allow[%d]: %w", route, j, err))
				continue
			}
			r.rules = append(r.rules, rule)
		}
	}
	for i := range c.Egress {
		r := &c.Egress[i]
		route := fmt.Sprintf("egress[%d]", i)
		checkListen(route, r.Listen)
		if r.Listen != "" {
			route = fmt.Sprintf("egress[%d] (%s)", i, r.Listen)
		}
		if host, _, err := net.SplitHostPort(r.Listen); err == nil && !loopback(host) {
			errs = append(errs, fmt.Errorf("%s.listen: %q is not a loopback address: an egress route lends the gateway's identity to whoever connects, so it listens on 127.0.0.1, ::1 or localhost only", route, r.Listen))
		}
		if r.Protocol != ProtocolTCP {
			errs = append(errs, fmt.Errorf("%s.protocol: %q: only tcp is available (postgres and http egress come with the credential broker)", route, r.Protocol))
		}
		if !hostPort(r.Upstream) {
			errs = append(errs, fmt.Errorf("%s.upstream: %q: want host:port", route, r.Upstream))
		}
		id, err := spiffeid.FromString(r.SPIFFEID)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s.spiffe_id: %q: %v (want the upstream's SPIFFE ID, such as spiffe://example.org/orders)", route, r.SPIFFEID, err))
		}
		r.id = id
	}
	return errors.Join(errs...)
}

func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func hostPort(s string) bool {
	_, port, err := net.SplitHostPort(s)
	return err == nil && port != ""
}
