package agent

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/resolver"
)

// MaxServerAddresses bounds the server list of Config.ServerAddress.
const MaxServerAddresses = 64

// ParseServerAddresses splits a server address setting: one host:port, or
// a comma-separated list of them (server replicas, tried in order). Spaces
// around elements are ignored. An error names the element (1-based) and
// says what is wrong with it; a list with an empty element, a repeated
// element or more than MaxServerAddresses elements is refused.
func ParseServerAddresses(s string) ([]string, error) {
	if strings.TrimSpace(s) == "" {
		return nil, fmt.Errorf("required: the server's agent API as host:port, or a comma-separated list of them")
	}
	parts := strings.Split(s, ",")
	if len(parts) > MaxServerAddresses {
		return nil, fmt.Errorf("%d servers listed: at most %d", len(parts), MaxServerAddresses)
	}
	out := make([]string, 0, len(parts))
	seen := make(map[string]int, len(parts))
	for i, p := range parts {
		p = strings.TrimSpace(p)
		if err := checkServerAddress(p); err != nil {
			if len(parts) == 1 {
				return nil, err
			}
			return nil, fmt.Errorf("element %d of %d: %w", i+1, len(parts), err)
		}
		key := strings.ToLower(p)
		if j, dup := seen[key]; dup {
			return nil, fmt.Errorf("element %d of %d: %q repeats element %d", i+1, len(parts), p, j+1)
		}
		seen[key] = i
		out = append(out, p)
	}
	return out, nil
}

// checkServerAddress checks one host:port of a server list.
func checkServerAddress(p string) error {
	if p == "" {
		return fmt.Errorf("empty: remove the extra comma, e.g. a.internal:8081,b.internal:8081")
	}
	if scheme, rest, ok := strings.Cut(p, "://"); ok {
		rest, _, _ = strings.Cut(rest, "/")
		return fmt.Errorf("%q: give host:port without the %s:// (the agent always speaks TLS to the server), e.g. %s", p, scheme, rest)
	}
	host, port, err := net.SplitHostPort(p)
	if err != nil {
		return fmt.Errorf("%q is not host:port (%v), e.g. signet.example.org:8081", p, err)
	}
	if host == "" {
		return fmt.Errorf("%q has no host, e.g. signet.example.org:8081", p)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("%q: port %q: want a port from 1 to 65535", p, port)
	}
	if _, err := netip.ParseAddr(host); err != nil && !validHostname(host) {
		return fmt.Errorf("%q: host %q is neither an IP address nor a DNS name", p, host)
	}
	return nil
}

// validHostname reports whether h is a plausible DNS name: labels of 1 to
// 63 letters, digits, '-' and '_', at most 253 characters.
func validHostname(h string) bool {
	h = strings.TrimSuffix(h, ".")
	if h == "" || len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return false
			}
		}
	}
	return true
}

// serversScheme is the gRPC resolver scheme of the agent's server list. The
// builder is registered per connection (grpc.WithResolvers), never
// globally.
const serversScheme = "signet-servers"

// lookupFunc resolves a DNS name to addresses, as net.Resolver.LookupHost.
type lookupFunc func(ctx context.Context, host string) ([]string, error)

// serversBuilder resolves the server list: every element in order, a DNS
// name expanded to all of its addresses, so gRPC's pick_first balancer
// connects to the first server that answers and, when that connection
// fails, moves on to the next. The agent keeps its SVID: every replica of
// the trust domain accepts it, so a failover never re-attests.
type serversBuilder struct {
	addrs  []string
	lookup lookupFunc
	log    *slog.Logger
}

func (b *serversBuilder) Scheme() string { return serversScheme }

func (b *serversBuilder) Build(_ resolver.Target, cc resolver.ClientConn, _ resolver.BuildOptions) (resolver.Resolver, error) {
	r := &serversResolver{b: b, cc: cc, done: make(chan struct{})}
	r.resolve()
	return r, nil
}

// serversResolver is one connection's resolver over the server list.
type serversResolver struct {
	b    *serversBuilder
	cc   resolver.ClientConn
	mu   sync.Mutex // serializes resolve
	busy atomic.Bool
	last time.Time // of the last resolve, under mu
	done chan struct{}
	once sync.Once
}

// resolveEvery bounds re-resolution: gRPC asks again after every failed
// connection attempt.
const resolveEvery = time.Second

// ResolveNow re-resolves in the background, at most once a second.
func (r *serversResolver) ResolveNow(resolver.ResolveNowOptions) {
	if !r.busy.CompareAndSwap(false, true) {
		return
	}
	go func() {
		defer r.busy.Store(false)
		r.mu.Lock()
		wait := time.Until(r.last.Add(resolveEvery))
		r.mu.Unlock()
		if wait > 0 {
			select {
			case <-time.After(wait):
			case <-r.done:
				return
			}
		}
		r.resolve()
	}()
}

// resolve expands the list and hands it to gRPC. A name that does not
// resolve is left out (and logged) while others do; when none does, the
// error goes to gRPC, which retries with backoff.
func (r *serversResolver) resolve() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.last = time.Now()
	addrs, err := expandServers(r.b.addrs, r.b.lookup, r.b.log)
	if err != nil {
		r.cc.ReportError(err)
		return
	}
	state := resolver.State{Addresses: make([]resolver.Address, len(addrs))}
	for i, a := range addrs {
		state.Addresses[i] = resolver.Address{Addr: a}
	}
	if err := r.cc.UpdateState(state); err != nil {
		r.b.log.Debug("server list update refused", logKeyError, err)
	}
}

func (r *serversResolver) Close() { r.once.Do(func() { close(r.done) }) }

// expandServers resolves each host:port of list in order: IP addresses as
// they are, DNS names to each of their addresses (in the resolver's order),
// duplicates dropped.
func expandServers(list []string, lookup lookupFunc, log *slog.Logger) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	add := func(a string) {
		if !seen[a] {
			seen[a] = true
			out = append(out, a)
		}
	}
	var errs []string
	for _, hp := range list {
		host, port, err := net.SplitHostPort(hp)
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		if _, err := netip.ParseAddr(host); err == nil {
			add(hp)
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		ips, err := lookup(ctx, host)
		cancel()
		if err != nil || len(ips) == 0 {
			errs = append(errs, fmt.Sprintf("resolve %s: %v", host, err))
			log.Warn("server name does not resolve; trying the other servers", "server", hp, logKeyError, err)
			continue
		}
		for _, ip := range ips {
			add(net.JoinHostPort(ip, port))
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no server address resolves: %s", strings.Join(errs, "; "))
	}
	return out, nil
}
