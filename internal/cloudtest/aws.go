package cloudtest

import (
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/smallstep/pkcs7"
)

// AWSSigner signs instance identity documents the way AWS does: a PKCS#7
// SignedData with the document embedded, under a self-signed RSA-2048
// certificate standing in for AWS's regional one.
type AWSSigner struct {
	Cert    *x509.Certificate
	CertPEM string
	key     *rsa.PrivateKey
}

// NewAWSSigner returns a signer whose key is Key(t, name).
func NewAWSSigner(t testing.TB, name string) *AWSSigner {
	t.Helper()
	key := Key(t, "aws:"+name)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "Amazon Web Services LLC (test " + name + ")"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
	}
	der, err := x509.CreateCertificate(nil, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &AWSSigner{Cert: cert, CertPEM: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})), key: key}
}

// Sign returns the rsa2048 endpoint's answer for doc: base64 DER, in lines
// of 64 characters, without PEM headers.
func (s *AWSSigner) Sign(t testing.TB, doc []byte) string {
	t.Helper()
	sd, err := pkcs7.NewSignedData(doc)
	if err != nil {
		t.Fatal(err)
	}
	sd.SetDigestAlgorithm(pkcs7.OIDDigestAlgorithmSHA256)
	if err := sd.AddSigner(s.Cert, s.key, pkcs7.SignerInfoConfig{}); err != nil {
		t.Fatal(err)
	}
	der, err := sd.Finish()
	if err != nil {
		t.Fatal(err)
	}
	b64 := base64.StdEncoding.EncodeToString(der)
	var lines []string
	for len(b64) > 64 {
		lines, b64 = append(lines, b64[:64]), b64[64:]
	}
	return strings.Join(append(lines, b64), "\n")
}

// AWSDocument is an instance identity document.
type AWSDocument struct {
	AccountID, Region, AvailabilityZone, InstanceID, InstanceType, ImageID string
}

// NewAWSDocument returns a document of account 123456789012 in us-east-1
// with a fresh random instance ID.
func NewAWSDocument(t testing.TB) AWSDocument {
	return AWSDocument{
		AccountID: "123456789012", Region: "us-east-1", AvailabilityZone: "us-east-1a",
		InstanceID: "i-" + RandomHex(t, 9)[:17], InstanceType: "t3.micro", ImageID: "ami-0abcdef1234567890",
	}
}

// JSON renders d as the metadata service does, with its other fields.
func (d AWSDocument) JSON() []byte {
	return fmt.Appendf(nil, `{
  "accountId" : %q,
  "architecture" : "x86_64",
  "availabilityZone" : %q,
  "billingProducts" : null,
  "devpayProductCodes" : null,
  "marketplaceProductCodes" : null,
  "imageId" : %q,
  "instanceId" : %q,
  "instanceType" : %q,
  "kernelId" : null,
  "pendingTime" : "2026-11-19T16:32:11Z",
  "privateIp" : "10.0.0.12",
  "ramdiskId" : null,
  "region" : %q,
  "version" : "2017-09-30"
}`, d.AccountID, d.AvailabilityZone, d.ImageID, d.InstanceID, d.InstanceType, d.Region)
}

// AWSIMDS starts a fake IMDSv2 on 127.0.0.1 serving doc signed by s: PUT
// /latest/api/token (with the TTL header) opens a session, and the
// document and rsa2048 GETs need its token. It is closed when t ends.
func AWSIMDS(t testing.TB, s *AWSSigner, doc AWSDocument) *httptest.Server {
	t.Helper()
	body := doc.JSON()
	sig := s.Sign(t, body)
	var mu sync.Mutex
	tokens := map[string]bool{}
	mux := http.NewServeMux()
	mux.HandleFunc("/latest/api/token", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPut {
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		if ttl, err := strconv.Atoi(r.Header.Get("X-aws-ec2-metadata-token-ttl-seconds")); err != nil || ttl < 1 || ttl > 21600 {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		tok := base64.RawURLEncoding.EncodeToString([]byte(RandomHex(t, 16)))
		mu.Lock()
		tokens[tok] = true
		mu.Unlock()
		w.Write([]byte(tok))
	})
	serve := func(path, content string) {
		mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			ok := tokens[r.Header.Get("X-aws-ec2-metadata-token")]
			mu.Unlock()
			if r.Method != http.MethodGet {
				http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
				return
			}
			if !ok {
				http.Error(w, "unauthorized", http.StatusUnauthorized)
				return
			}
			w.Header().Set("Content-Type", "text/plain")
			w.Write([]byte(content))
		})
	}
	serve("/latest/dynamic/instance-identity/document", string(body))
	serve("/latest/dynamic/instance-identity/rsa2048", sig)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}
