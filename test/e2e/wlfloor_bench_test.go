package e2e

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	workloadpb "github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"google.golang.org/grpc"
)

// floorServerEnv makes the test binary act as the floor of a Workload API
// server (see TestMain): "<socket> <stock|static>". It serves
// FetchX509SVID and FetchJWTSVID from answers built once at start (a real
// X.509-SVID and JWT-SVID signed by a CA generated there), with no
// attestation, no cache, no interceptors, no metrics: what grpc-go itself
// costs per call. "stock" is grpc.NewServer with no options; "static"
// adds the fixed flow-control windows the agent sets. It prints "ready"
// once it listens and serves until killed.
const floorServerEnv = "SIGNET_E2E_FLOOR_SERVER"

// floorSPIFFEID is the SPIFFE ID of the floor server's SVIDs.
const floorSPIFFEID = "spiffe://example.org/bench"

func floorServerMain() int {
	f := strings.Fields(os.Getenv(floorServerEnv))
	if len(f) != 2 || (f[1] != "stock" && f[1] != "static") {
		fmt.Fprintln(os.Stderr, "floor server: want \"<socket> <stock|static>\"")
		return 2
	}
	x509Resp, jwtResp, err := floorAnswers()
	if err != nil {
		fmt.Fprintln(os.Stderr, "floor server:", err)
		return 3
	}
	var opts []grpc.ServerOption
	if f[1] == "static" {
		const window = 1 << 20 // the agent's staticWindow (its maxRecvMsgSize)
		opts = append(opts, grpc.StaticStreamWindowSize(window), grpc.StaticConnWindowSize(window))
	}
	l, err := net.Listen("unix", f[0])
	if err != nil {
		fmt.Fprintln(os.Stderr, "floor server:", err)
		return 3
	}
	gs := grpc.NewServer(opts...)
	workloadpb.RegisterSpiffeWorkloadAPIServer(gs, &floorAPI{x509: x509Resp, jwt: jwtResp})
	fmt.Println("ready")
	if err := gs.Serve(l); err != nil {
		fmt.Fprintln(os.Stderr, "floor server:", err)
		return 3
	}
	return 0
}

// floorAnswers builds the one X509SVIDResponse and JWTSVIDResponse the
// floor server gives every caller.
func floorAnswers() (*workloadpb.X509SVIDResponse, *workloadpb.JWTSVIDResponse, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	td, _ := url.Parse("spiffe://example.org")
	id, _ := url.Parse(floorSPIFFEID)
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), URIs: []*url.URL{td},
		NotBefore: now.Add(-time.Minute), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, nil, err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	leafTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), URIs: []*url.URL{id},
		NotBefore: now.Add(-time.Minute), NotAfter: now.Add(time.Hour),
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: caKey, KeyID: "floor"}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return nil, nil, err
	}
	token, err := jwt.Signed(signer).Claims(jwt.Claims{
		Subject: floorSPIFFEID, Audience: jwt.Audience{"bench"},
		IssuedAt: jwt.NewNumericDate(now), Expiry: jwt.NewNumericDate(now.Add(time.Hour)),
	}).Serialize()
	if err != nil {
		return nil, nil, err
	}
	return &workloadpb.X509SVIDResponse{Svids: []*workloadpb.X509SVID{{
			SpiffeId: floorSPIFFEID, X509Svid: leafDER, X509SvidKey: keyDER, Bundle: caDER,
		}}},
		&workloadpb.JWTSVIDResponse{Svids: []*workloadpb.JWTSVID{{SpiffeId: floorSPIFFEID, Svid: token}}},
		nil
}

// floorAPI answers the two calls the load client makes and no others.
type floorAPI struct {
	workloadpb.UnimplementedSpiffeWorkloadAPIServer
	x509 *workloadpb.X509SVIDResponse
	jwt  *workloadpb.JWTSVIDResponse
}

func (a *floorAPI) FetchX509SVID(_ *workloadpb.X509SVIDRequest, stream workloadpb.SpiffeWorkloadAPI_FetchX509SVIDServer) error {
	if err := stream.Send(a.x509); err != nil {
		return err
	}
	<-stream.Context().Done()
	return nil
}

func (a *floorAPI) FetchJWTSVID(context.Context, *workloadpb.JWTSVIDRequest) (*workloadpb.JWTSVIDResponse, error) {
	return a.jwt, nil
}

// BenchmarkWorkloadAPIFloor is BenchmarkWorkloadAPIProcesses against the
// floor server instead of the agent: the same load client process, the
// same calls, the same figures, from a grpc-go server whose handlers only
// send an answer built at start. Its server CPU per call (reported as
// agent-cpu-µs/call, so the two benchmarks' lines compare column by
// column) is what any Workload API served with grpc-go costs on this
// machine before it does any work of its own. SIGNET_BENCH_AGENT_GOMAXPROCS
// sets the floor server's GOMAXPROCS as it does the agent's. Run both in one invocation
// (-test.bench 'WorkloadAPI(Processes|Floor)') so they share a window.
func BenchmarkWorkloadAPIFloor(b *testing.B) {
	secs := benchSeconds()
	for _, mode := range []string{"stock", "static"} {
		socket := filepath.Join(b.TempDir(), "floor.sock")
		srv := startFloorServer(b, socket, mode)
		for _, method := range []string{"x509", "jwt"} {
			for _, n := range []int{1, 16} {
				b.Run(fmt.Sprintf("%s/%s/clients=%d", mode, method, n), func(b *testing.B) {
					for i := 0; i < b.N; i++ {
						res, cpu, sw := runLoadClient(b, socket, srv.Process.Pid, method, n, secs)
						reportLoad(b, res, cpu, sw)
					}
				})
			}
		}
	}
}

// startFloorServer starts the floor server process on socket and returns
// once it listens; it is killed when the benchmark ends.
func startFloorServer(tb testing.TB, socket, mode string) *exec.Cmd {
	tb.Helper()
	cmd := exec.Command(os.Args[0], "-test.run", "^$")
	cmd.Env = append(os.Environ(), floorServerEnv+"="+socket+" "+mode)
	if procs := os.Getenv("SIGNET_BENCH_AGENT_GOMAXPROCS"); procs != "" {
		cmd.Env = append(cmd.Env, "GOMAXPROCS="+procs) // as the agent gets it
	}
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	sc := bufio.NewScanner(stdout)
	if !sc.Scan() || sc.Text() != "ready" {
		tb.Fatalf("floor server did not start: %q", sc.Text())
	}
	return cmd
}
