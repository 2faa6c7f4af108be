package sds

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	secretv3 "github.com/envoyproxy/go-control-plane/envoy/service/secret/v3"
	"github.com/google/go-cmp/cmp"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	sdsv1 "github.com/signet-id/signet/internal/gen/signet/envoysds/v1"
	"github.com/signet-id/signet/internal/workload"
	"github.com/signet-id/signet/internal/workload/workloadtest"
)

// The reference encodings below are built with go-control-plane's types,
// the way this package built its responses before it had its own messages.

func refInline(b []byte) *corev3.DataSource {
	return &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: b}}
}

func refTLSSecret(t *testing.T, name string, s workload.X509SVID) *tlsv3.Secret {
	t.Helper()
	certs, err := x509.ParseCertificates(s.ChainDER)
	if err != nil {
		t.Fatal(err)
	}
	return &tlsv3.Secret{Name: name, Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
		CertificateChain: refInline(certsPEM(certs)),
		PrivateKey:       refInline(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: s.KeyDER})),
	}}}
}

func refValidationSecret(name string, b *spiffebundle.Bundle) *tlsv3.Secret {
	return &tlsv3.Secret{Name: name, Type: &tlsv3.Secret_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
		TrustedCa: refInline(certsPEM(b.X509Authorities())),
	}}}
}

func refAllSecret(t *testing.T, tds []*spiffebundle.Bundle) *tlsv3.Secret {
	t.Helper()
	cfg := &tlsv3.SPIFFECertValidatorConfig{}
	for _, b := range tds {
		cfg.TrustDomains = append(cfg.TrustDomains, &tlsv3.SPIFFECertValidatorConfig_TrustDomain{
			Name: b.TrustDomain().Name(), TrustBundle: refInline(certsPEM(b.X509Authorities())),
		})
	}
	typed, err := anypb.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &tlsv3.Secret{Name: AllBundlesName, Type: &tlsv3.Secret_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
		CustomValidatorConfig: &corev3.TypedExtensionConfig{Name: spiffeValidator, TypedConfig: typed},
	}}}
}

// TestWireMatchesGoControlPlane: every response this package sends (tls
// certificates, a trust domain's validation context, ALL with the SPIFFE
// validator's config, in one DiscoveryResponse) encodes byte for byte as
// go-control-plane's messages of the same content, its Any type URLs
// included, and decodes as go-control-plane's types.
func TestWireMatchesGoControlPlane(t *testing.T) {
	local := workloadtest.NewCA(t, spiffeid.RequireTrustDomainFromString("example.org"))
	fed := workloadtest.NewCA(t, spiffeid.RequireTrustDomainFromString("partner.example"))
	web := local.X509SVID(t, spiffeid.RequireFromString("spiffe://example.org/web"))
	db := local.X509SVID(t, spiffeid.RequireFromString("spiffe://example.org/db"))
	tds := []*spiffebundle.Bundle{local.Bundle(), fed.Bundle()}

	var got []*sdsv1.Secret
	var want []*tlsv3.Secret
	for _, c := range []struct {
		name string
		svid workload.X509SVID
	}{{DefaultSVIDName, web}, {web.ID.String(), web}, {db.ID.String(), db}} {
		s, err := tlsSecret(c.name, c.svid)
		if err != nil {
			t.Fatal(err)
		}
		got, want = append(got, s), append(want, refTLSSecret(t, c.name, c.svid))
	}
	got = append(got, validationSecret(RootCAName, tds[0]), validationSecret("spiffe://partner.example", tds[1]))
	want = append(want, refValidationSecret(RootCAName, tds[0]), refValidationSecret("spiffe://partner.example", tds[1]))
	all, err := allSecret(tds)
	if err != nil {
		t.Fatal(err)
	}
	got, want = append(got, all), append(want, refAllSecret(t, tds))

	for i := range got {
		g, err := proto.Marshal(got[i])
		if err != nil {
			t.Fatal(err)
		}
		w, err := proto.Marshal(want[i])
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(g, w) {
			t.Errorf("secret %q: encoding differs from go-control-plane's:\n got %x\nwant %x", want[i].Name, g, w)
		}
	}

	resp, err := response(got, "7", "7")
	if err != nil {
		t.Fatal(err)
	}
	refResp := &discoveryv3.DiscoveryResponse{VersionInfo: "7", TypeUrl: SecretTypeURL, Nonce: "7"}
	for _, s := range want {
		a, err := anypb.New(s)
		if err != nil {
			t.Fatal(err)
		}
		refResp.Resources = append(refResp.Resources, a)
	}
	g, err := proto.Marshal(resp)
	if err != nil {
		t.Fatal(err)
	}
	w, err := proto.Marshal(refResp)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(g, w) {
		t.Fatalf("DiscoveryResponse encoding differs from go-control-plane's:\n got %x\nwant %x", g, w)
	}
	var decoded discoveryv3.DiscoveryResponse
	if err := proto.Unmarshal(g, &decoded); err != nil {
		t.Fatalf("go-control-plane cannot decode the response: %v", err)
	}
	for i, a := range decoded.Resources {
		var s tlsv3.Secret
		if err := a.UnmarshalTo(&s); err != nil {
			t.Fatalf("resource %d as %s: %v", i, a.TypeUrl, err)
		}
		if !proto.Equal(&s, want[i]) {
			t.Errorf("resource %d decodes as %v, want %v", i, &s, want[i])
		}
	}
}

// TestRequestMatchesGoControlPlane: a DiscoveryRequest as Envoy sends it
// (node, resource locators, an error detail with details: fields this
// package does not describe) decodes into sdsv1's request with every field
// the package reads equal to go-control-plane's.
func TestRequestMatchesGoControlPlane(t *testing.T) {
	detail, err := anypb.New(&corev3.Node{Id: "detail"})
	if err != nil {
		t.Fatal(err)
	}
	ref := &discoveryv3.DiscoveryRequest{
		VersionInfo:      "3",
		Node:             &corev3.Node{Id: "envoy-1", Cluster: "web", UserAgentName: "envoy"},
		ResourceNames:    []string{"spiffe://example.org/web", RootCAName, ""},
		ResourceLocators: []*discoveryv3.ResourceLocator{{Name: "ALL"}},
		TypeUrl:          SecretTypeURL,
		ResponseNonce:    "3",
		ErrorDetail:      &statuspb.Status{Code: 3, Message: "bad certificate", Details: []*anypb.Any{detail}},
	}
	b, err := proto.Marshal(ref)
	if err != nil {
		t.Fatal(err)
	}
	var got sdsv1.DiscoveryRequest
	if err := proto.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(requestFields(ref), fieldsOf(&got)); diff != "" {
		t.Errorf("decoded request (-go-control-plane +sdsv1):\n%s", diff)
	}
}

// reqFields are the DiscoveryRequest fields this package reads.
type reqFields struct {
	Version, TypeURL, Nonce string
	Names                   []string
	HasError                bool
	ErrorCode               int32
	ErrorMessage            string
}

func requestFields(r *discoveryv3.DiscoveryRequest) reqFields {
	return reqFields{r.VersionInfo, r.TypeUrl, r.ResponseNonce, r.ResourceNames, r.ErrorDetail != nil,
		r.GetErrorDetail().GetCode(), r.GetErrorDetail().GetMessage()}
}

func fieldsOf(r *sdsv1.DiscoveryRequest) reqFields {
	return reqFields{r.VersionInfo, r.TypeUrl, r.ResponseNonce, r.ResourceNames, r.ErrorDetail != nil,
		r.GetErrorDetail().GetCode(), r.GetErrorDetail().GetMessage()}
}

// FuzzRequest: for any bytes a client sends, sdsv1 accepts a request
// exactly when go-control-plane does, and reads the same fields from it.
func FuzzRequest(f *testing.F) {
	seed, _ := proto.Marshal(&discoveryv3.DiscoveryRequest{
		VersionInfo: "1", Node: &corev3.Node{Id: "n"}, ResourceNames: []string{"ALL"}, TypeUrl: SecretTypeURL,
		ResponseNonce: "1", ErrorDetail: &statuspb.Status{Code: 13, Message: "x"},
	})
	f.Add(seed)
	f.Add([]byte{})
	f.Add([]byte{0x32, 0x02, 0x08, 0x01})
	f.Fuzz(func(t *testing.T, b []byte) {
		var ref discoveryv3.DiscoveryRequest
		var got sdsv1.DiscoveryRequest
		refErr, gotErr := proto.Unmarshal(b, &ref), proto.Unmarshal(b, &got)
		if gotErr != nil {
			// sdsv1 skips what it does not describe, so it may accept what
			// go-control-plane refuses (a bad Node), never the reverse.
			if refErr == nil {
				t.Fatalf("sdsv1 refuses %x (%v), go-control-plane accepts it", b, gotErr)
			}
			return
		}
		if refErr != nil {
			return
		}
		if diff := cmp.Diff(requestFields(&ref), fieldsOf(&got)); diff != "" {
			t.Fatalf("request %x (-go-control-plane +sdsv1):\n%s", b, diff)
		}
	})
}

// TestServiceDescMatchesGoControlPlane: the hand-written service has
// go-control-plane's service name, methods and stream kinds, so Envoy's
// paths reach it.
func TestServiceDescMatchesGoControlPlane(t *testing.T) {
	type method struct {
		Name           string
		Client, Server bool
	}
	methods := func(d *grpc.ServiceDesc) (out []method) {
		for _, m := range d.Methods {
			out = append(out, method{Name: m.MethodName})
		}
		for _, s := range d.Streams {
			out = append(out, method{s.StreamName, s.ClientStreams, s.ServerStreams})
		}
		return out
	}
	ref := &secretv3.SecretDiscoveryService_ServiceDesc
	if serviceDesc.ServiceName != ref.ServiceName || serviceDesc.Metadata != ref.Metadata {
		t.Errorf("service %q (%s), want %q (%s)", serviceDesc.ServiceName, serviceDesc.Metadata, ref.ServiceName, ref.Metadata)
	}
	if diff := cmp.Diff(methods(ref), methods(&serviceDesc)); diff != "" {
		t.Errorf("methods (-go-control-plane +sds):\n%s", diff)
	}
}
