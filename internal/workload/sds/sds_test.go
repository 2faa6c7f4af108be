package sds_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"os"
	"strconv"
	"testing"
	"time"

	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	secretv3 "github.com/envoyproxy/go-control-plane/envoy/service/secret/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	commonv1 "github.com/signet-id/signet/internal/gen/signet/common/v1"
	"github.com/signet-id/signet/internal/testenv"
	"github.com/signet-id/signet/internal/workload/sds"
)

const (
	nodeID = "spiffe://example.org/node/envoy"
	webID  = "spiffe://example.org/web"
)

// start runs a real server and agent with an entry for the test process
// whose X.509-SVIDs live ttl, and returns an SDS client on the agent's
// Workload API socket, the way Envoy connects (no security header).
func start(t *testing.T, ttl time.Duration) secretv3.SecretDiscoveryServiceClient {
	t.Helper()
	env := testenv.New(t)
	env.CreateEntry(&commonv1.Entry{
		SpiffeId: webID, ParentId: nodeID, X509TtlSeconds: int64(ttl / time.Second),
		Selectors: []*commonv1.Selector{{Type: "unix", Value: "uid:" + strconv.Itoa(os.Getuid())}},
	})
	a := env.StartAgent(nodeID)
	a.AwaitReady()
	cc, err := grpc.NewClient("unix://"+a.Config.SocketPath, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return secretv3.NewSecretDiscoveryServiceClient(cc)
}

func secrets(t *testing.T, resp *discoveryv3.DiscoveryResponse) map[string]*tlsv3.Secret {
	t.Helper()
	if resp.TypeUrl != sds.SecretTypeURL {
		t.Fatalf("type_url = %q, want %q", resp.TypeUrl, sds.SecretTypeURL)
	}
	out := map[string]*tlsv3.Secret{}
	for _, r := range resp.Resources {
		var s tlsv3.Secret
		if err := r.UnmarshalTo(&s); err != nil {
			t.Fatalf("resource %s: %v", r.TypeUrl, err)
		}
		out[s.Name] = &s
	}
	return out
}

// leaf checks that a tls_certificate secret is a usable key pair whose
// leaf carries id, and returns the leaf.
func leaf(t *testing.T, s *tlsv3.Secret, id string) *x509.Certificate {
	t.Helper()
	tc := s.GetTlsCertificate()
	if tc == nil {
		t.Fatalf("secret %q has no tls_certificate", s.Name)
	}
	pair, err := tls.X509KeyPair(tc.CertificateChain.GetInlineBytes(), tc.PrivateKey.GetInlineBytes())
	if err != nil {
		t.Fatalf("secret %q: chain and key do not make a key pair: %v", s.Name, err)
	}
	if got := pair.Leaf.URIs; len(got) != 1 || got[0].String() != id {
		t.Fatalf("secret %q: leaf URIs = %v, want %s", s.Name, got, id)
	}
	return pair.Leaf
}

// trusts checks that a validation_context's trusted CA verifies cert.
func trusts(t *testing.T, s *tlsv3.Secret, cert *x509.Certificate) {
	t.Helper()
	vc := s.GetValidationContext()
	if vc == nil {
		t.Fatalf("secret %q has no validation_context", s.Name)
	}
	pool := x509.NewCertPool()
	rest := vc.TrustedCa.GetInlineBytes()
	for {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		pool.AddCert(c)
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		t.Fatalf("secret %q does not verify the SVID: %v", s.Name, err)
	}
}

func TestStreamSecretsPushesRotation(t *testing.T) {
	client := start(t, 6*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	stream, err := client.StreamSecrets(ctx)
	if err != nil {
		t.Fatal(err)
	}
	names := []string{webID, sds.RootCAName, sds.AllBundlesName, "spiffe://example.org", sds.DefaultSVIDName}
	if err := stream.Send(&discoveryv3.DiscoveryRequest{TypeUrl: sds.SecretTypeURL, ResourceNames: names}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatalf("first response: %v", err)
	}
	got := secrets(t, resp)
	if len(got) != len(names) {
		t.Fatalf("got secrets %v, want %v", keys(got), names)
	}
	first := leaf(t, got[webID], webID)
	leaf(t, got[sds.DefaultSVIDName], webID)
	trusts(t, got[sds.RootCAName], first)
	trusts(t, got["spiffe://example.org"], first)
	all := got[sds.AllBundlesName].GetValidationContext().GetCustomValidatorConfig()
	var spiffeCfg tlsv3.SPIFFECertValidatorConfig
	if all.GetName() != "envoy.tls.cert_validator.spiffe" || all.GetTypedConfig().UnmarshalTo(&spiffeCfg) != nil ||
		len(spiffeCfg.TrustDomains) != 1 || spiffeCfg.TrustDomains[0].Name != "example.org" {
		t.Fatalf("ALL = %v, want the SPIFFE validator with trust domain example.org", all)
	}

	// ACK; the next response is the rotated SVID.
	if err := stream.Send(&discoveryv3.DiscoveryRequest{TypeUrl: sds.SecretTypeURL, ResourceNames: names,
		VersionInfo: resp.VersionInfo, ResponseNonce: resp.Nonce}); err != nil {
		t.Fatal(err)
	}
	for {
		next, err := stream.Recv()
		if err != nil {
			t.Fatalf("waiting for the rotated SVID: %v", err)
		}
		if next.VersionInfo == resp.VersionInfo || next.Nonce == resp.Nonce {
			t.Fatalf("pushed response reuses version %q / nonce %q", next.VersionInfo, next.Nonce)
		}
		rotated := leaf(t, secrets(t, next)[webID], webID)
		if rotated.SerialNumber.Cmp(first.SerialNumber) != 0 {
			if !rotated.NotAfter.After(first.NotAfter) {
				t.Errorf("rotated SVID expires %s, not after the first one's %s", rotated.NotAfter, first.NotAfter)
			}
			break
		}
		resp = next
		if err := stream.Send(&discoveryv3.DiscoveryRequest{TypeUrl: sds.SecretTypeURL, ResourceNames: names,
			VersionInfo: next.VersionInfo, ResponseNonce: next.Nonce}); err != nil {
			t.Fatal(err)
		}
	}
}

func TestStreamSecretsAllWhenNoNames(t *testing.T) {
	client := start(t, time.Hour)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stream, err := client.StreamSecrets(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&discoveryv3.DiscoveryRequest{}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	got := secrets(t, resp)
	for _, n := range []string{webID, sds.RootCAName, sds.AllBundlesName, "spiffe://example.org"} {
		if got[n] == nil {
			t.Errorf("no secret %q among %v", n, keys(got))
		}
	}
}

func TestFetchSecrets(t *testing.T) {
	client := start(t, time.Hour)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := client.FetchSecrets(ctx, &discoveryv3.DiscoveryRequest{ResourceNames: []string{webID}})
	if err != nil {
		t.Fatalf("FetchSecrets: %v", err)
	}
	leaf(t, secrets(t, resp)[webID], webID)

	for name, req := range map[string]*discoveryv3.DiscoveryRequest{
		"another workload's ID": {ResourceNames: []string{"spiffe://example.org/db"}},
		"unknown trust domain":  {ResourceNames: []string{"spiffe://other.org"}},
	} {
		_, err := client.FetchSecrets(ctx, req)
		if status.Code(err) != codes.NotFound {
			t.Errorf("FetchSecrets(%s) = %v, want NotFound", name, err)
		}
	}
	_, err = client.FetchSecrets(ctx, &discoveryv3.DiscoveryRequest{TypeUrl: "type.googleapis.com/envoy.config.cluster.v3.Cluster"})
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("FetchSecrets(cluster type) = %v, want InvalidArgument", err)
	}
}

func keys(m map[string]*tlsv3.Secret) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// A caller with no entry gets nothing, not even bundles.
func TestNoIdentityIsDenied(t *testing.T) {
	env := testenv.New(t)
	env.CreateEntry(&commonv1.Entry{SpiffeId: webID, ParentId: nodeID,
		Selectors: []*commonv1.Selector{{Type: "unix", Value: "uid:" + strconv.Itoa(os.Getuid()+4242)}}})
	a := env.StartAgent(nodeID)
	a.AwaitReady()
	cc, err := grpc.NewClient("unix://"+a.Config.SocketPath, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	client := secretv3.NewSecretDiscoveryServiceClient(cc)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := client.FetchSecrets(ctx, &discoveryv3.DiscoveryRequest{ResourceNames: []string{sds.RootCAName}}); status.Code(err) != codes.PermissionDenied {
		t.Errorf("FetchSecrets(ROOTCA) without an identity = %v, want PermissionDenied", err)
	}
	stream, err := client.StreamSecrets(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_ = stream.Send(&discoveryv3.DiscoveryRequest{})
	if _, err := stream.Recv(); status.Code(err) != codes.PermissionDenied {
		t.Errorf("StreamSecrets without an identity = %v, want PermissionDenied", err)
	}
}
