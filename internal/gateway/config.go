package gateway

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"golang.org/x/net/http/httpguts"

	"github.com/signet-id/signet/internal/broker/policy"
	"github.com/signet-id/signet/internal/brokerclient"
	"github.com/signet-id/signet/internal/config"
	"github.com/signet-id/signet/internal/credtemplate"
)

// Protocols of a route.
const (
	ProtocolHTTP     = "http"
	ProtocolTCP      = "tcp"
	ProtocolPostgres = "postgres"
)

// Modes of an egress route's upstream_tls.
const (
	TLSDisable    = "disable"
	TLSRequire    = "require"
	TLSVerifyFull = "verify-full"
)

// Config is gateway.yaml. Unknown keys are errors; see docs/gateway.md.
type Config struct {
	// AgentSocket is the agent's Workload API socket path; empty means
	// $SPIFFE_ENDPOINT_SOCKET, else the agent's default.
	AgentSocket string `yaml:"agent_socket"`
	// BrokerURL is the credential broker's base URL (https://HOST:PORT) for
	// the postgres egress routes; empty means $SIGNET_BROKER_URL, else
	// the URL the agent learned from its server.
	BrokerURL string    `yaml:"broker_url"`
	Ingress   []Ingress `yaml:"ingress"`
	Egress    []Egress  `yaml:"egress"`
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

// Egress listens on Listen (a loopback address) for the application's
// plain connections. Protocol tcp carries each over SPIFFE mTLS to
// Upstream, whose SPIFFE ID must be SPIFFEID. Protocol postgres speaks the
// PostgreSQL protocol to the application (which authenticates with
// nothing) and logs in to Upstream, a PostgreSQL server, as the user of a
// lease of Credential from the broker, renewed in the background.
type Egress struct {
	Listen   string `yaml:"listen"`
	Protocol string `yaml:"protocol"`
	Upstream string `yaml:"upstream"`
	// SPIFFEID is the upstream's SPIFFE ID (tcp).
	SPIFFEID string `yaml:"spiffe_id"`
	// Credential names the broker credential to lease (postgres).
	Credential string `yaml:"credential"`
	// Context is the task context sent with every request (postgres).
	Context map[string]string `yaml:"context"`
	// TTL is the lease lifetime asked for; zero: the credential's
	// default_ttl (postgres).
	TTL config.Duration `yaml:"ttl"`
	// Database is the upstream database; empty: the credential's
	// data.database (postgres).
	Database string `yaml:"database"`
	// UpstreamTLS is how the gateway secures its connection to a postgres
	// upstream (nil: verify-full against the system roots); for http only
	// ca_file is read.
	UpstreamTLS *UpstreamTLS `yaml:"upstream_tls"`
	// Inject is the header an http route adds to every request (http).
	Inject *Inject `yaml:"inject"`

	id     spiffeid.ID
	pg     *pgconn.Config // upstream settings without user and password
	target *url.URL       // http upstream
	format *credtemplate.Template
	roots  *x509.CertPool // http upstream's roots; nil: the system's
}

// Inject is the credential an http egress route adds to each request:
// header Header set to Format, a credential template (internal/credtemplate)
// over the lease's fields, such as "Bearer {{.access_token}}".
type Inject struct {
	Header string `yaml:"header"`
	Format string `yaml:"format"`
}

// UpstreamTLS is an egress route's TLS to its upstream. Mode is disable
// (plain TCP), require (TLS without verifying the server, as libpq's
// sslmode=require; with CAFile the chain is verified, as verify-ca) or
// verify-full (the default: chain against CAFile or the system roots, and
// the upstream's host name).
type UpstreamTLS struct {
	Mode   string `yaml:"mode"`
	CAFile string `yaml:"ca_file"`
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
	if err := config.DecodeDocument(data, &c, "set ingress or egress routes", "agent_socket, broker_url, ingress, egress"); err != nil {
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
		switch r.Protocol {
		case ProtocolTCP:
			errs = append(errs, r.validateTCP(route)...)
		case ProtocolPostgres:
			errs = append(errs, r.validatePostgres(route)...)
		case ProtocolHTTP:
			errs = append(errs, r.validateHTTP(route)...)
		default:
			errs = append(errs, fmt.Errorf("%s.protocol: %q: use tcp, postgres or http", route, r.Protocol))
		}
	}
	if c.BrokerURL != "" {
		if _, err := brokerclient.ParseURL("broker_url", c.BrokerURL); err != nil {
			errs = append(errs, err)
		}
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

// notFor reports the keys set on r that its protocol does not read.
func (r *Egress) notFor(route string, keys map[string]bool) []error {
	var errs []error
	for _, k := range []string{"spiffe_id", "credential", "context", "ttl", "database", "upstream_tls", "inject"} {
		if keys[k] {
			errs = append(errs, fmt.Errorf("%s.%s: not used by protocol %s: remove it", route, k, r.Protocol))
		}
	}
	return errs
}

func (r *Egress) validateTCP(route string) []error {
	errs := r.notFor(route, map[string]bool{"credential": r.Credential != "", "context": len(r.Context) > 0,
		"ttl": r.TTL != 0, "database": r.Database != "", "upstream_tls": r.UpstreamTLS != nil, "inject": r.Inject != nil})
	if !hostPort(r.Upstream) {
		errs = append(errs, fmt.Errorf("%s.upstream: %q: want host:port", route, r.Upstream))
	}
	id, err := spiffeid.FromString(r.SPIFFEID)
	if err != nil {
		errs = append(errs, fmt.Errorf("%s.spiffe_id: %q: %v (want the upstream's SPIFFE ID, such as spiffe://example.org/orders)", route, r.SPIFFEID, err))
	}
	r.id = id
	return errs
}

func (r *Egress) validatePostgres(route string) []error {
	errs := r.notFor(route, map[string]bool{"spiffe_id": r.SPIFFEID != "", "inject": r.Inject != nil})
	if r.Credential == "" {
		errs = append(errs, fmt.Errorf("%s.credential: required: the broker credential whose leased user logs in upstream, such as orders-db", route))
	}
	if r.TTL < 0 {
		errs = append(errs, fmt.Errorf("%s.ttl: %s: want a positive duration, or nothing for the credential's default_ttl", route, r.TTL))
	}
	host, port, err := net.SplitHostPort(r.Upstream)
	if n, perr := strconv.Atoi(port); err != nil || host == "" || perr != nil || n < 1 || n > 65535 {
		errs = append(errs, fmt.Errorf("%s.upstream: %q: want the PostgreSQL server's host:port, such as db.internal:5432", route, r.Upstream))
		return errs
	}
	mode, ca := TLSVerifyFull, ""
	if t := r.UpstreamTLS; t != nil {
		if t.Mode != "" {
			mode = t.Mode
		}
		ca = t.CAFile
		switch mode {
		case TLSDisable, TLSRequire, TLSVerifyFull:
		default:
			errs = append(errs, fmt.Errorf("%s.upstream_tls.mode: %q: use disable, require or verify-full", route, t.Mode))
			return errs
		}
		if mode == TLSDisable && ca != "" {
			errs = append(errs, fmt.Errorf("%s.upstream_tls.ca_file: not used with mode disable: remove it, or use require or verify-full", route))
			return errs
		}
	}
	// pgconn's own parser builds the TLS settings (and reads ca_file), so
	// the gateway connects exactly as libpq's sslmode would. The user and
	// password come from each lease.
	q := url.Values{"sslmode": {mode}, "connect_timeout": {strconv.Itoa(int(dialTimeout.Seconds()))}}
	if ca != "" {
		q.Set("sslrootcert", ca)
	}
	u := url.URL{Scheme: "postgres", Host: r.Upstream, User: url.User("signet-gateway"), Path: "/postgres", RawQuery: q.Encode()}
	pg, err := pgconn.ParseConfig(u.String())
	if err != nil {
		var pe *pgconn.ParseConfigError
		if errors.As(err, &pe) && pe.Unwrap() != nil {
			err = pe.Unwrap()
		}
		field := "upstream"
		if ca != "" {
			field = "upstream_tls.ca_file"
		}
		errs = append(errs, fmt.Errorf("%s.%s: %v", route, field, err))
		return errs
	}
	pg.Fallbacks = nil
	r.pg = pg
	return errs
}

func (r *Egress) validateHTTP(route string) []error {
	errs := r.notFor(route, map[string]bool{"spiffe_id": r.SPIFFEID != "", "database": r.Database != ""})
	if r.Credential == "" {
		errs = append(errs, fmt.Errorf("%s.credential: required: the broker credential to inject, such as partner-api", route))
	}
	if r.TTL < 0 {
		errs = append(errs, fmt.Errorf("%s.ttl: %s: want a positive duration, or nothing for the credential's default_ttl", route, r.TTL))
	}
	u, err := url.Parse(r.Upstream)
	if err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		errs = append(errs, fmt.Errorf("%s.upstream: %q: want the upstream's https:// URL, such as https://api.partner.example", route, r.Upstream))
	} else {
		r.target = u
	}
	switch {
	case r.Inject == nil:
		errs = append(errs, fmt.Errorf(`%s.inject: required: {header: Authorization, format: "Bearer {{.access_token}}"}`, route))
	case !httpguts.ValidHeaderFieldName(r.Inject.Header):
		errs = append(errs, fmt.Errorf("%s.inject.header: %q: want a header name, such as Authorization", route, r.Inject.Header))
	case r.Inject.Format == "":
		errs = append(errs, fmt.Errorf(`%s.inject.format: required: a credential template, such as "Bearer {{.access_token}}"`, route))
	default:
		t, err := credtemplate.Parse(route+".inject.format", r.Inject.Format)
		if err != nil {
			errs = append(errs, err)
		}
		r.format = t
	}
	if t := r.UpstreamTLS; t != nil {
		if t.Mode != "" && t.Mode != TLSVerifyFull {
			errs = append(errs, fmt.Errorf("%s.upstream_tls.mode: %q: an http upstream is always verified (verify-full); set only ca_file", route, t.Mode))
		}
		if t.CAFile != "" {
			pem, err := os.ReadFile(t.CAFile)
			pool := x509.NewCertPool()
			switch {
			case err != nil:
				errs = append(errs, fmt.Errorf("%s.upstream_tls.ca_file: %v", route, err))
			case !pool.AppendCertsFromPEM(pem):
				errs = append(errs, fmt.Errorf("%s.upstream_tls.ca_file: %s holds no PEM certificate", route, t.CAFile))
			default:
				r.roots = pool
			}
		}
	}
	return errs
}
