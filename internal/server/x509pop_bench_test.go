package server_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"gopkg.in/yaml.v3"

	"github.com/signet-id/signet/internal/config"
	"github.com/signet-id/signet/internal/cputime"
	agentv1 "github.com/signet-id/signet/internal/gen/signet/agent/v1"
	"github.com/signet-id/signet/internal/nodeattest/x509pop"
	"github.com/signet-id/signet/internal/nodeattest/x509pop/x509poptest"
	"github.com/signet-id/signet/internal/server"
	"github.com/signet-id/signet/internal/testenv"
)

// benchClientEnv names the parameters file of the client process of
// BenchmarkX509popAttest; set, TestX509popBenchClients plays the agents.
const benchClientEnv = "SIGNET_X509POP_BENCH_CLIENTS"

// benchParams is what the client process needs.
type benchParams struct {
	Addr, BundlePath, CACertPath, CAKeyPath string
	Agents, Total                           int
}

// BenchmarkX509popAttest measures x509pop attestations against a real
// in-process server (SQLite store, real TLS): 200 agents attest at once,
// each over its own connection from its own loopback address (so the
// per-address rate limit treats them as 200 hosts), each with its own
// certificate, fresh CSR key and challenge. The agents run in a child
// process, so the server's CPU is this process's alone. b.N is the total
// number of attestations; run with -benchtime 4000x or more.
func BenchmarkX509popAttest(b *testing.B) {
	dir := b.TempDir()
	root := x509poptest.NewCA(b, "bench node root")
	p := benchParams{
		BundlePath: filepath.Join(dir, "bundle.pem"), CACertPath: filepath.Join(dir, "node-ca.pem"),
		CAKeyPath: filepath.Join(dir, "node-ca.key"), Agents: min(200, b.N), Total: b.N,
	}
	x509poptest.WritePEM(b, p.CACertPath, root.Cert)
	der, err := x509.MarshalPKCS8PrivateKey(root.Key)
	if err != nil {
		b.Fatal(err)
	}
	writeBench(b, p.CAKeyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	var section yaml.Node
	if err := yaml.Unmarshal([]byte("{ca_bundle_path: "+p.CACertPath+"}"), &section); err != nil {
		b.Fatal(err)
	}
	env := testenv.New(b, func(c *server.Config) {
		c.NodeAttestors = config.Plugins{x509pop.Name: *section.Content[0]}
		c.Logger = slog.New(slog.DiscardHandler)
	})
	p.Addr = env.Server.Addr().String()
	var bundle []byte
	for _, c := range env.Server.Bundle().X509Authorities() {
		bundle = append(bundle, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	writeBench(b, p.BundlePath, bundle)
	params, err := json.Marshal(p)
	if err != nil {
		b.Fatal(err)
	}
	paramsPath := filepath.Join(dir, "params.json")
	writeBench(b, paramsPath, params)

	cmd := exec.Command(os.Args[0], "-test.run", "^TestX509popBenchClients$", "-test.count", "1")
	cmd.Env = append(os.Environ(), benchClientEnv+"="+paramsPath)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	before := cputime.Now()
	b.ResetTimer()
	out, err := cmd.Output()
	b.StopTimer()
	serverCPU := cputime.Now() - before
	if err != nil {
		b.Fatalf("client process: %v\n%s\n%s", err, out, stderr.String())
	}
	var ok, busy int
	var secs float64
	found := false
	for sc := bufio.NewScanner(bytes.NewReader(out)); sc.Scan(); {
		if _, err := fmt.Sscanf(sc.Text(), "X509POP_BENCH ok=%d busy=%d seconds=%g", &ok, &busy, &secs); err == nil {
			found = true
		}
	}
	if !found || ok != p.Total {
		b.Fatalf("client process reported ok=%d of %d (found=%v):\n%s\n%s", ok, p.Total, found, out, stderr.String())
	}
	b.ReportMetric(float64(ok)/secs, "attestations/s")
	b.ReportMetric(float64(serverCPU.Microseconds())/float64(ok), "server-cpu-µs/attestation")
	b.ReportMetric(float64(busy), "busy-retries")
	client := cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	b.ReportMetric(float64(client.Microseconds())/float64(ok), "client-cpu-µs/attestation")
	b.Logf("%s", bytes.TrimSpace(out))
}

// TestX509popBenchClients is the client process of BenchmarkX509popAttest;
// it skips unless started by it.
func TestX509popBenchClients(t *testing.T) {
	path := os.Getenv(benchClientEnv)
	if path == "" {
		t.Skip("the client half of BenchmarkX509popAttest")
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var p benchParams
	if err := json.Unmarshal(data, &p); err != nil {
		t.Fatal(err)
	}
	root := &x509poptest.CA{Cert: readBenchCert(t, p.CACertPath), Key: readBenchKey(t, p.CAKeyPath)}
	bundle, err := x509bundle.Load(spiffeid.RequireTrustDomainFromString("example.org"), p.BundlePath)
	if err != nil {
		t.Fatal(err)
	}
	tlsCfg := tlsconfig.TLSClientConfig(bundle, tlsconfig.AuthorizeID(server.ServerID(bundle.TrustDomain())))
	type agent struct {
		leaf *x509poptest.Leaf
		api  agentv1.AgentClient
	}
	agents := make([]agent, p.Agents)
	for i := range agents {
		agents[i] = agent{leaf: root.Issue(t, fmt.Sprintf("bench-node-%d", i)), api: dialFrom(t, p.Addr, i, tlsCfg)}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	var next, busy atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, len(agents))
	start := time.Now()
	for _, a := range agents {
		wg.Go(func() {
			for next.Add(1) <= int64(p.Total) {
				for {
					err := attestX509pop(ctx, a.api, a.leaf)
					if status.Code(err) == codes.Unavailable || status.Code(err) == codes.ResourceExhausted {
						busy.Add(1)
						time.Sleep(10 * time.Millisecond)
						continue
					}
					if err != nil {
						errs <- err
						return
					}
					break
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	fmt.Printf("X509POP_BENCH ok=%d busy=%d seconds=%g\n", p.Total, busy.Load(), elapsed.Seconds())
	fmt.Printf("mean wait for the challenge %s, for the svid %s\n",
		time.Duration(phaseChallenge.Load()/int64(p.Total)), time.Duration(phaseResult.Load()/int64(p.Total)))
}

// dialFrom connects to addr from loopback address 127.0.0.(i+2).
func dialFrom(t *testing.T, addr string, i int, tlsCfg *tls.Config) agentv1.AgentClient {
	t.Helper()
	local := &net.TCPAddr{IP: net.IPv4(127, 0, byte(i/250), byte(2+i%250))}
	d := net.Dialer{LocalAddr: local}
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(tlsCfg)),
		grpc.WithContextDialer(func(ctx context.Context, a string) (net.Conn, error) { return d.DialContext(ctx, "tcp", a) }))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return agentv1.NewAgentClient(cc)
}

// attestX509pop runs one x509pop exchange for leaf, with a fresh CSR.
func attestX509pop(ctx context.Context, api agentv1.AgentClient, leaf *x509poptest.Leaf) error {
	_, csr := testenv.NewCSR(nopTB{})
	t0 := time.Now()
	stream, err := api.AttestAgent(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = stream.CloseSend() }()
	if err := stream.Send(&agentv1.AttestAgentRequest{Step: &agentv1.AttestAgentRequest_Params{Params: &agentv1.AttestParams{
		AttestationType: x509pop.Name, Payload: x509pop.MarshalPayload(leaf.Chain), Csr: csr,
	}}}); err != nil {
		_, err = stream.Recv()
		return err
	}
	for {
		resp, err := stream.Recv()
		if err != nil {
			return err
		}
		if c := resp.GetChallenge(); c != nil {
			phaseChallenge.Add(int64(time.Since(t0)))
			t0 = time.Now()
			sig, err := x509pop.Sign(leaf.Key, c)
			if err != nil {
				return err
			}
			if err := stream.Send(&agentv1.AttestAgentRequest{Step: &agentv1.AttestAgentRequest_ChallengeResponse{ChallengeResponse: sig}}); err != nil {
				return err
			}
			continue
		}
		if resp.GetResult() == nil {
			return errors.New("empty attestation response")
		}
		phaseResult.Add(int64(time.Since(t0)))
		return nil
	}
}

// phaseChallenge and phaseResult add up the client's waits: from sending
// the params to the challenge (queueing, chain checks), and from the answer
// to the agent SVID (signature check, signing, the store's write).
var phaseChallenge, phaseResult atomic.Int64

// nopTB lets testenv.NewCSR run off the test goroutine; it never fails.
type nopTB struct{ testing.TB }

func (nopTB) Helper() {}

func writeBench(tb testing.TB, path string, data []byte) {
	tb.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		tb.Fatal(err)
	}
}

func readBenchCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := pem.Decode(data)
	if b == nil {
		t.Fatalf("%s: no PEM", path)
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func readBenchKey(t *testing.T, path string) crypto.Signer {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := pem.Decode(data)
	if b == nil {
		t.Fatalf("%s: no PEM", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return k.(crypto.Signer)
}
