package agent

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

func TestParseServerAddresses(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     []string
		err      string // substring of the error; "" for success
	}{
		{"one", "signet.example.org:8081", []string{"signet.example.org:8081"}, ""},
		{"list", "a.internal:8081,b.internal:8081", []string{"a.internal:8081", "b.internal:8081"}, ""},
		{"spaces", " a.internal:8081 , 10.0.0.2:8081", []string{"a.internal:8081", "10.0.0.2:8081"}, ""},
		{"ipv6", "[::1]:8081,127.0.0.1:8081", []string{"[::1]:8081", "127.0.0.1:8081"}, ""},
		{"empty", "", nil, "required"},
		{"no port", "signet.example.org", nil, `"signet.example.org" is not host:port`},
		{"a URL", "https://signet.example.org:8081", nil, `"https://signet.example.org:8081": give host:port without the https:// (the agent always speaks TLS to the server), e.g. signet.example.org:8081`},
		{"second has no port", "a.internal:8081,b.internal", nil, `element 2 of 2: "b.internal" is not host:port`},
		{"trailing comma", "a.internal:8081,", nil, "element 2 of 2: empty"},
		{"double comma", "a:1,,b:2", nil, "element 2 of 3: empty"},
		{"no host", "a:1,:8081", nil, `element 2 of 2: ":8081" has no host`},
		{"port zero", "a:1,b:0", nil, `element 2 of 2: "b:0": port "0": want a port from 1 to 65535`},
		{"port too big", "a:70000", nil, `port "70000"`},
		{"port name", "a:http", nil, `port "http"`},
		{"bad host", "a:1,exa mple.org:1", nil, `element 2 of 2: "exa mple.org:1": host "exa mple.org" is neither`},
		{"repeat", "a.internal:1,b:2,A.internal:1", nil, `element 3 of 3: "A.internal:1" repeats element 1`},
		{"too many", strings.Repeat("a:1,", MaxServerAddresses) + "a:1", nil, "at most 64"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseServerAddresses(tc.in)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Errorf("ParseServerAddresses(%q) = %v, %v; want an error with %q", tc.in, got, err, tc.err)
				}
				return
			}
			if err != nil || !slices.Equal(got, tc.want) {
				t.Errorf("ParseServerAddresses(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
			}
		})
	}
}

// TestConfigNamesBadServerElement: the agent's config validation names the
// field and the element.
func TestConfigNamesBadServerElement(t *testing.T) {
	err := Config{ServerAddress: "a.internal:8081,b.internal"}.validate()
	if err == nil || !strings.Contains(err.Error(), "ServerAddress: element 2 of 2") {
		t.Errorf("validate() = %v, want ServerAddress: element 2 of 2 …", err)
	}
}

func TestExpandServers(t *testing.T) {
	lookup := func(_ context.Context, host string) ([]string, error) {
		switch host {
		case "multi.internal":
			return []string{"10.0.0.1", "10.0.0.2", "fd00::3"}, nil
		case "one.internal":
			return []string{"10.0.0.2"}, nil
		}
		return nil, errors.New("no such host")
	}
	log := slog.New(slog.DiscardHandler)
	got, err := expandServers([]string{"multi.internal:8081", "gone.internal:8081", "10.9.9.9:8081", "one.internal:8081"}, lookup, log)
	want := []string{"10.0.0.1:8081", "10.0.0.2:8081", "[fd00::3]:8081", "10.9.9.9:8081"}
	if err != nil || !slices.Equal(got, want) {
		t.Errorf("expandServers() = %v, %v; want %v (in list order, each name's addresses, no duplicates)", got, err, want)
	}
	if _, err := expandServers([]string{"gone.internal:1"}, lookup, log); err == nil || !strings.Contains(err.Error(), "gone.internal") {
		t.Errorf("expandServers(nothing resolves) = %v, want an error naming the host", err)
	}
}

// TestServerListFailover: over the resolver the agent dials with, calls go
// to the first listed server and, once it is gone, to the next, on the
// same client connection; a DNS name with two addresses counts as two.
func TestServerListFailover(t *testing.T) {
	var servers []*grpc.Server
	var addrs []string
	for range 2 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		srv := grpc.NewServer()
		healthpb.RegisterHealthServer(srv, health.NewServer())
		go func() { _ = srv.Serve(ln) }()
		t.Cleanup(srv.Stop)
		servers = append(servers, srv)
		addrs = append(addrs, ln.Addr().String())
	}
	_, port0, _ := net.SplitHostPort(addrs[0])
	_, port1, _ := net.SplitHostPort(addrs[1])
	// "replicas.internal" has one address; the other server is listed by IP.
	lookup := func(_ context.Context, host string) ([]string, error) {
		if host == "replicas.internal" {
			return []string{"127.0.0.1"}, nil
		}
		return nil, errors.New("no such host")
	}
	var dialed []string
	c := &serverClient{addrs: []string{"replicas.internal:" + port0, "127.0.0.1:" + port1}, lookup: lookup,
		log: slog.New(slog.DiscardHandler)}
	conn, err := grpc.NewClient(serversScheme+":///servers",
		grpc.WithResolvers(&serversBuilder{addrs: c.addrs, lookup: lookup, log: c.log}),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, a string) (net.Conn, error) {
			dialed = append(dialed, a)
			return c.dialServer(ctx, a)
		}))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	check := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
		return err
	}
	if err := check(); err != nil {
		t.Fatalf("call with both servers up: %v", err)
	}
	if got := *c.current.Load(); got != addrs[0] {
		t.Fatalf("connected to %s, want the first listed server %s", got, addrs[0])
	}
	servers[0].Stop()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if err := check(); err == nil && *c.current.Load() == addrs[1] {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("after the first server stopped: %v, connected to %s; dialed %v", err, *c.current.Load(), dialed)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// FuzzParseServerAddresses: any server_address value either parses into
// elements that each pass the single-address check and that rejoin to the
// input (spaces aside), or is refused with an error, never a panic.
func FuzzParseServerAddresses(f *testing.F) {
	for _, s := range []string{"a.internal:8081,b.internal:8081", "[::1]:1", "a:1,,b:2", ":1", "a:0", "x", ",", " a:1 , b:2 "} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParseServerAddresses(s)
		if err != nil {
			return
		}
		if len(got) == 0 || len(got) > MaxServerAddresses {
			t.Fatalf("ParseServerAddresses(%q) = %d elements", s, len(got))
		}
		for _, a := range got {
			if err := checkServerAddress(a); err != nil {
				t.Fatalf("ParseServerAddresses(%q) returned %q, which fails its own check: %v", s, a, err)
			}
		}
		if strings.ReplaceAll(strings.Join(got, ","), " ", "") != strings.Map(func(r rune) rune {
			if r == ' ' || r == '\t' || r == '\n' || r == '\r' || r == '\v' || r == '\f' {
				return -1
			}
			return r
		}, s) && !strings.ContainsFunc(s, func(r rune) bool { return r > 127 }) {
			t.Fatalf("ParseServerAddresses(%q) = %q: elements do not rejoin to the input", s, got)
		}
	})
}
