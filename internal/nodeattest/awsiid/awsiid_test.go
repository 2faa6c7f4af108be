package awsiid_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/smallstep/pkcs7"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-id/signet/internal/cloudtest"
	"github.com/signet-id/signet/internal/errkind"
	"github.com/signet-id/signet/internal/model"
	"github.com/signet-id/signet/internal/nodeattest"
	"github.com/signet-id/signet/internal/nodeattest/awsiid"
)

var td = spiffeid.RequireTrustDomainFromString("example.org")

// fixture is a fake instance and a verifier trusting its signer.
type fixture struct {
	signer *cloudtest.AWSSigner
	doc    cloudtest.AWSDocument
	imds   *httptest.Server
	nodes  *cloudtest.Nodes
	v      *awsiid.Verifier
}

func newFixture(t *testing.T, cfg awsiid.Config) *fixture {
	t.Helper()
	f := &fixture{signer: cloudtest.NewAWSSigner(t, "unit"), doc: cloudtest.NewAWSDocument(t), nodes: &cloudtest.Nodes{}}
	f.imds = cloudtest.AWSIMDS(t, f.signer, f.doc)
	if len(cfg.Certificates) == 0 {
		cfg.Certificates = []string{f.signer.CertPEM}
	}
	v, err := awsiid.NewVerifier(td, cfg, f.nodes)
	if err != nil {
		t.Fatal(err)
	}
	f.v = v
	return f
}

// payload reads the evidence from the fake instance through the attestor.
func (f *fixture) payload(t *testing.T) []byte {
	t.Helper()
	a, err := awsiid.New(awsiid.AgentConfig{MetadataURL: f.imds.URL})
	if err != nil {
		t.Fatal(err)
	}
	p, err := a.Payload(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// payloadOf builds a payload by hand.
func payloadOf(t testing.TB, doc []byte, sig string) []byte {
	t.Helper()
	b, err := json.Marshal(awsiid.Payload{Document: string(doc), PKCS7: sig})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestAttestAdmitsOnceUntilEvicted(t *testing.T) {
	f := newFixture(t, awsiid.Config{Accounts: []string{"123456789012", "210987654321"}})
	p := f.payload(t)
	res, err := f.v.Attest(t.Context(), p, nil)
	if err != nil {
		t.Fatalf("Attest = %v", err)
	}
	want := spiffeid.RequireFromString("spiffe://example.org/signet/agent/aws_iid/123456789012/us-east-1/" + f.doc.InstanceID)
	if res.AgentID != want {
		t.Errorf("AgentID = %s, want %s", res.AgentID, want)
	}
	if res.CanReattest {
		t.Errorf("CanReattest = true, want false (trust on first use)")
	}
	wantSels := []model.Selector{
		{Type: "aws_iid", Value: "account:123456789012"},
		{Type: "aws_iid", Value: "az:us-east-1a"},
		{Type: "aws_iid", Value: "image_id:ami-0abcdef1234567890"},
		{Type: "aws_iid", Value: "instance_type:t3.micro"},
		{Type: "aws_iid", Value: "region:us-east-1"},
	}
	if d := cmp.Diff(wantSels, res.Selectors); d != "" {
		t.Errorf("Selectors (-want +got):\n%s", d)
	}

	f.nodes.Admit(res.AgentID, res.Selectors)
	_, err = f.v.Attest(t.Context(), p, nil)
	if !errkind.Is(err, errkind.PermissionDenied) || !strings.Contains(err.Error(), "already attested") {
		t.Fatalf("second Attest = %v, want PermissionDenied: already attested", err)
	}
	f.nodes.Evict(res.AgentID)
	if _, err := f.v.Attest(t.Context(), p, nil); err != nil {
		t.Fatalf("Attest after eviction = %v, want admitted", err)
	}
}

func TestAttestRefusals(t *testing.T) {
	other := cloudtest.NewAWSSigner(t, "attacker")
	for _, tc := range []struct {
		name    string
		cfg     awsiid.Config
		payload func(t *testing.T, f *fixture) []byte
		kind    errkind.Kind
		msg     string
	}{
		{
			name: "account not allowed", cfg: awsiid.Config{Accounts: []string{"999999999999"}},
			payload: func(t *testing.T, f *fixture) []byte { return f.payload(t) }, kind: errkind.PermissionDenied, msg: "account 123456789012 is not allowed",
		},
		{
			name: "signed by another key (its certificate embedded)",
			payload: func(t *testing.T, f *fixture) []byte {
				doc := f.doc.JSON()
				return payloadOf(t, doc, other.Sign(t, doc))
			},
			kind: errkind.PermissionDenied, msg: "not a configured AWS certificate",
		},
		{
			name: "document swapped for another",
			payload: func(t *testing.T, f *fixture) []byte {
				d := f.doc
				d.AccountID = "999999999999"
				return payloadOf(t, d.JSON(), f.signer.Sign(t, f.doc.JSON()))
			},
			kind: errkind.PermissionDenied, msg: "signed content is not the document",
		},
		{
			name: "SHA-1 digest",
			payload: func(t *testing.T, f *fixture) []byte {
				return payloadOf(t, f.doc.JSON(), signSHA1(t, f))
			},
			kind: errkind.PermissionDenied, msg: "is not SHA-256",
		},
		{
			name: "signed document without an instance",
			payload: func(t *testing.T, f *fixture) []byte {
				doc := []byte(`{"accountId": "123456789012", "region": "us-east-1"}`)
				return payloadOf(t, doc, f.signer.Sign(t, doc))
			},
			kind: errkind.InvalidArgument, msg: "instanceId is missing",
		},
		{
			name: "path characters in the instance ID",
			payload: func(t *testing.T, f *fixture) []byte {
				d := f.doc
				d.InstanceID = "i-../../server"
				doc := d.JSON()
				return payloadOf(t, doc, f.signer.Sign(t, doc))
			},
			kind: errkind.InvalidArgument, msg: "instanceId",
		},
		{
			name: "unknown field", payload: func(*testing.T, *fixture) []byte { return []byte(`{"document":"x","pkcs7":"eA==","role":"admin"}`) },
			kind: errkind.InvalidArgument, msg: "not the aws_iid JSON object",
		},
		{
			name: "trailing data", payload: func(t *testing.T, f *fixture) []byte { return append(f.payload(t), "{}"...) },
			kind: errkind.InvalidArgument, msg: "data after",
		},
		{
			name: "signature not base64", payload: func(t *testing.T, f *fixture) []byte { return payloadOf(t, f.doc.JSON(), "!!!") },
			kind: errkind.InvalidArgument, msg: "not base64",
		},
		{
			name: "signature not PKCS#7", payload: func(t *testing.T, f *fixture) []byte { return payloadOf(t, f.doc.JSON(), "AAAA") },
			kind: errkind.PermissionDenied, msg: "aws_iid: signature",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, tc.cfg)
			p := tc.payload(t, f)
			_, err := f.v.Attest(t.Context(), p, nil)
			if errkind.Of(err) != tc.kind || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("Attest = %v (%v), want %v containing %q", err, errkind.Of(err), tc.kind, tc.msg)
			}
			if strings.Contains(err.Error(), "privateIp") || strings.Contains(err.Error(), "MII") {
				t.Errorf("Attest error %q holds evidence", err)
			}
		})
	}
}

func signSHA1(t *testing.T, f *fixture) string {
	t.Helper()
	// Sign with SHA-1 through a second signer sharing the trusted cert's
	// key: the digest alone must make it fail.
	sd, err := pkcs7.NewSignedData(f.doc.JSON())
	if err != nil {
		t.Fatal(err)
	}
	sd.SetDigestAlgorithm(pkcs7.OIDDigestAlgorithmSHA1)
	if err := sd.AddSigner(f.signer.Cert, cloudtest.Key(t, "aws:unit"), pkcs7.SignerInfoConfig{}); err != nil {
		t.Fatal(err)
	}
	der, err := sd.Finish()
	if err != nil {
		t.Fatal(err)
	}
	return b64(der)
}

func TestNodeLookupFailureIsNotARefusal(t *testing.T) {
	f := newFixture(t, awsiid.Config{})
	v, err := awsiid.NewVerifier(td, awsiid.Config{Certificates: []string{f.signer.CertPEM}}, failingNodes{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = v.Attest(t.Context(), f.payload(t), nil)
	if err == nil || errkind.Of(err) != errkind.Internal {
		t.Fatalf("Attest with the store down = %v, want an internal error", err)
	}
}

type failingNodes struct{}

func (failingNodes) GetNode(context.Context, spiffeid.ID) (model.Node, error) {
	return model.Node{}, errors.New("database is down")
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  awsiid.Config
		want []string
	}{
		{"no certificate", awsiid.Config{}, []string{"certificates: required"}},
		{"bad entries", awsiid.Config{Accounts: []string{"12345", "123456789012"}, Certificates: []string{"not pem"}, CertificateFiles: []string{""}},
			[]string{"accounts[0]: \"12345\" is not an AWS account ID", "certificates[0]: no PEM certificate", "certificate_files[0]: empty path"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			for _, w := range tc.want {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Errorf("Validate() = %v, want it to contain %q", err, w)
				}
			}
		})
	}
	if _, err := awsiid.NewVerifier(td, awsiid.Config{CertificateFiles: []string{"/does/not/exist"}}, &cloudtest.Nodes{}); err == nil ||
		!strings.Contains(err.Error(), "certificate_files[0]") {
		t.Errorf("NewVerifier(missing file) = %v, want certificate_files[0]", err)
	}
	if err := (awsiid.AgentConfig{MetadataURL: "ftp://x"}).Validate(); err == nil || !strings.Contains(err.Error(), "metadata_url") {
		t.Errorf("AgentConfig.Validate(ftp) = %v, want metadata_url", err)
	}
}

func TestAttestorNeedsASession(t *testing.T) {
	// A metadata service that refuses requests without an IMDSv2 token
	// (what the fake does) serves the attestor, which opens one; one that
	// fails the session is an error, not a payload.
	mux := http.NewServeMux()
	mux.HandleFunc("/latest/api/token", func(w http.ResponseWriter, r *http.Request) { http.Error(w, "forbidden", http.StatusForbidden) })
	srv := httptest.NewServer(mux)
	defer srv.Close()
	a, err := awsiid.New(awsiid.AgentConfig{MetadataURL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Payload(t.Context()); err == nil || !strings.Contains(err.Error(), "403") {
		t.Fatalf("Payload = %v, want the 403", err)
	}
	var _ nodeattest.Attestor = a
}
