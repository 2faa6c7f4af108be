package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"

	"github.com/signet-id/signet/internal/testenv"
)

var bundleEndpointLine = regexp.MustCompile(`"bundle_endpoint":"([^"]+)"`)

// fedDomain is one Signet trust domain run as its own server process.
type fedDomain struct {
	td                         spiffeid.TrustDomain
	dir, adminSock, addr, http string
	bundleEndpoint             string // bundle_endpoint_address, when started with it
	server                     *proc
}

// startDomain starts a server for td with an HTTPS listener; extra are
// more server flags, env more environment for the process.
func startDomain(t *testing.T, td string, env []string, extra ...string) *fedDomain {
	t.Helper()
	d := &fedDomain{td: spiffeid.RequireTrustDomainFromString(td), dir: filepath.Join(t.TempDir(), td)}
	serverDir := filepath.Join(d.dir, "server")
	d.adminSock = filepath.Join(serverDir, "admin.sock")
	args := append([]string{"server", "run", "--trust-domain", td, "--data-dir", serverDir, "--bind-address", "127.0.0.1:0",
		"--http-address", "127.0.0.1:0", "--log-level", "info"}, extra...)
	p := &proc{cmd: exec.Command(signetBin, args...), out: &testenv.LogBuffer{}}
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	p.cmd.Env = append(os.Environ(), env...)
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start server %s: %v", td, err)
	}
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("--- server %s output ---\n%s", td, p.out.String())
		}
	})
	d.server = p
	d.addr, d.http = serverAddrs(t, p)
	if m := bundleEndpointLine.FindStringSubmatch(p.out.String()); m != nil {
		d.bundleEndpoint = m[1]
	}
	eventually(t, 30*time.Second, "healthcheck of "+td, func() error {
		_, errOut, err := signetRun("healthcheck", "--admin-socket", d.adminSock)
		if err != nil {
			return fmt.Errorf("%v: %s", err, errOut)
		}
		return nil
	})
	return d
}

func (d *fedDomain) cli(t *testing.T, args ...string) string {
	t.Helper()
	return signet(t, append(args, "--admin-socket", d.adminSock)...)
}

// bundleFile writes the domain's bundle in format (spiffe or pem).
func (d *fedDomain) bundleFile(t *testing.T, format string) string {
	t.Helper()
	path := filepath.Join(d.dir, "bundle."+format)
	if err := os.WriteFile(path, []byte(d.cli(t, "bundle", "show", "--format", format)), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// startAgent joins an agent to the domain and registers the calling
// user's workload as id, federating with feds; it returns a Workload API
// client.
func (d *fedDomain) startAgent(t *testing.T, id string, feds ...string) *workloadapi.Client {
	t.Helper()
	nodeID := "spiffe://" + d.td.Name() + "/node/1"
	args := []string{"entry", "create", "--parent-id", nodeID, "--spiffe-id", id, "--selector", "unix:uid:" + strconv.Itoa(os.Getuid())}
	for _, f := range feds {
		args = append(args, "--federates-with", f)
	}
	d.cli(t, args...)
	token := strings.TrimSpace(d.cli(t, "token", "create", "--spiffe-id", nodeID))
	socket := filepath.Join(d.dir, "agent.sock")
	start(t, "agent of "+d.td.Name(), "agent", "run", "--server-address", d.addr, "--trust-bundle", d.bundleFile(t, "pem"),
		"--join-token", token, "--socket", socket, "--data-dir", filepath.Join(d.dir, "agent"), "--sync-interval", "200ms", "--log-level", "info")
	c, err := workloadapi.New(t.Context(), workloadapi.WithAddr("unix://"+socket))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

type federationView struct {
	Status         string `json:"status"`
	BundleSequence uint64 `json:"bundle_sequence"`
	LastError      string `json:"last_error"`
	Failures       int64  `json:"failures"`
}

func (d *fedDomain) federation(t *testing.T, verb, td string) federationView {
	t.Helper()
	var v federationView
	if err := json.Unmarshal([]byte(d.cli(t, "federation", verb, td, "--json")), &v); err != nil {
		t.Fatalf("federation %s %s --json: %v", verb, td, err)
	}
	return v
}

// refreshFailing runs `federation refresh td --json` on d, which must
// exit non-zero, print the relationship's state on stdout and name the
// failure on stderr.
func (d *fedDomain) refreshFailing(t *testing.T, td string) federationView {
	t.Helper()
	out, errOut, err := signetRun("federation", "refresh", td, "--json", "--admin-socket", d.adminSock)
	if err == nil || !strings.Contains(errOut, "refresh of "+td+" failed: ") {
		t.Fatalf("federation refresh %s: %v, stderr %q; want exit status 1 naming the failure", td, err, errOut)
	}
	var v federationView
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("federation refresh %s --json: %v (stdout %q)", td, err, out)
	}
	return v
}

// waitFederated waits until d holds a fetched bundle of td.
func (d *fedDomain) waitFederated(t *testing.T, td string) {
	t.Helper()
	eventually(t, 30*time.Second, d.td.Name()+" fetches the bundle of "+td, func() error {
		v := d.federation(t, "show", td)
		if v.Status != "ok" || v.Failures != 0 {
			return fmt.Errorf("federation show %s: %+v", td, v)
		}
		return nil
	})
}

// writeWebPKI writes a test CA and a server certificate for 127.0.0.1 it
// signed, standing in for a web-PKI certificate.
func writeWebPKI(t *testing.T, dir string) (caFile, certFile, keyFile string) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Test Web Root"},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, key.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	pkcs8, _ := x509.MarshalPKCS8PrivateKey(key)
	caFile, certFile, keyFile = filepath.Join(dir, "web-ca.pem"), filepath.Join(dir, "web.pem"), filepath.Join(dir, "web.key")
	for _, f := range []struct {
		path, typ string
		der       []byte
		mode      os.FileMode
	}{{caFile, "CERTIFICATE", caDER, 0o644}, {certFile, "CERTIFICATE", der, 0o644}, {keyFile, "PRIVATE KEY", pkcs8, 0o600}} {
		if err := os.WriteFile(f.path, pem.EncodeToMemory(&pem.Block{Type: f.typ, Bytes: f.der}), f.mode); err != nil {
			t.Fatal(err)
		}
	}
	return caFile, certFile, keyFile
}

// TestFederation runs two Signet trust domains federated both ways over
// https_spiffe, and a third whose bundle endpoint serves both profiles:
// https_web on its HTTPS listener (a test CA's certificate), which the
// first federates with, and https_spiffe on bundle_endpoint_address, which
// the second federates with. Each side's go-spiffe client validates the
// other's X509-SVID and JWT-SVID with what its own Workload API returns.
func TestFederation(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test builds and runs processes")
	}
	t.Parallel()
	webCA, webCert, webKey := writeWebPKI(t, t.TempDir())
	// The web-PKI domain, and a.test trusting the test CA as its system
	// roots (SSL_CERT_FILE).
	c := startDomain(t, "c.test", nil, "--http-tls-cert-file", webCert, "--http-tls-key-file", webKey,
		"--bundle-endpoint-address", "127.0.0.1:0")
	if c.bundleEndpoint == "" {
		t.Fatal("c.test logged no bundle_endpoint address")
	}
	a := startDomain(t, "a.test", []string{"SSL_CERT_FILE=" + webCA})
	b := startDomain(t, "b.test", nil)

	aBundle, bBundle := a.bundleFile(t, "spiffe"), b.bundleFile(t, "pem") // both formats are accepted
	a.cli(t, "federation", "create", "--trust-domain", "b.test", "--bundle-endpoint-url", "https://"+b.http+"/bundle",
		"--profile", "https_spiffe", "--endpoint-spiffe-id", "spiffe://b.test/signet/server", "--trust-bundle", bBundle)
	b.cli(t, "federation", "create", "--trust-domain", "a.test", "--bundle-endpoint-url", "https://"+a.http+"/bundle",
		"--profile", "https_spiffe", "--endpoint-spiffe-id", "spiffe://a.test/signet/server", "--trust-bundle", aBundle)
	a.cli(t, "federation", "create", "--trust-domain", "c.test", "--bundle-endpoint-url", "https://"+c.http+"/bundle", "--profile", "https_web")
	b.cli(t, "federation", "create", "--trust-domain", "c.test", "--bundle-endpoint-url", "https://"+c.bundleEndpoint+"/bundle",
		"--profile", "https_spiffe", "--endpoint-spiffe-id", "spiffe://c.test/signet/server", "--trust-bundle", c.bundleFile(t, "spiffe"))
	a.waitFederated(t, "b.test")
	a.waitFederated(t, "c.test")
	b.waitFederated(t, "a.test")
	b.waitFederated(t, "c.test")
	if av, bv := a.federation(t, "show", "c.test"), b.federation(t, "show", "c.test"); av.BundleSequence != bv.BundleSequence {
		t.Errorf("c.test's bundle over https_web (sequence %d) and over https_spiffe (sequence %d) differ", av.BundleSequence, bv.BundleSequence)
	}
	// A refresh that fetches the bundle exits 0 with the state.
	if v := a.federation(t, "refresh", "b.test"); v.Status != "ok" || v.LastError != "" {
		t.Errorf("federation refresh b.test = %+v, want ok", v)
	}
	if list := a.cli(t, "federation", "list"); !strings.Contains(list, "b.test") || !strings.Contains(list, "c.test") || !strings.Contains(list, "2 relationship(s)") {
		t.Errorf("federation list on a.test:\n%s\nwant b.test and c.test", list)
	}

	aID, bID := spiffeid.RequireFromString("spiffe://a.test/web"), spiffeid.RequireFromString("spiffe://b.test/api")
	aClient := a.startAgent(t, aID.String(), "b.test", "c.test")
	bClient := b.startAgent(t, bID.String(), "a.test")

	// Each side's X509 context carries the other's bundle (federated_bundles).
	fetch := func(c *workloadapi.Client, want ...string) *workloadapi.X509Context {
		var x *workloadapi.X509Context
		eventually(t, 30*time.Second, "X509 context with the federated bundles", func() error {
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
			defer cancel()
			var err error
			if x, err = c.FetchX509Context(ctx); err != nil {
				return err
			}
			for _, td := range want {
				if !x.Bundles.Has(spiffeid.RequireTrustDomainFromString(td)) {
					return fmt.Errorf("no bundle of %s yet", td)
				}
			}
			return nil
		})
		return x
	}
	aCtx := fetch(aClient, "a.test", "b.test", "c.test")
	bCtx := fetch(bClient, "b.test", "a.test")

	t.Run("x509-svids verify across the trust domains", func(t *testing.T) {
		if id, _, err := x509svid.Verify(bCtx.DefaultSVID().Certificates, aCtx.Bundles); err != nil || id != bID {
			t.Errorf("a.test verifies b.test's X509-SVID: %v, %v; want %s", id, err, bID)
		}
		if id, _, err := x509svid.Verify(aCtx.DefaultSVID().Certificates, bCtx.Bundles); err != nil || id != aID {
			t.Errorf("b.test verifies a.test's X509-SVID: %v, %v; want %s", id, err, aID)
		}
		// The X509 bundles stream (FetchX509Bundles) has them too.
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		set, err := aClient.FetchX509Bundles(ctx)
		if err != nil || !set.Has(bID.TrustDomain()) || !set.Has(spiffeid.RequireTrustDomainFromString("c.test")) {
			t.Errorf("a.test FetchX509Bundles = %v, %v; want b.test and c.test", set, err)
		}
	})

	t.Run("jwt-svids validate across the trust domains", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		for _, tc := range []struct {
			name          string
			issuer, check *workloadapi.Client
			id            spiffeid.ID
		}{{"a.test validates b.test's", bClient, aClient, bID}, {"b.test validates a.test's", aClient, bClient, aID}} {
			svid, err := tc.issuer.FetchJWTSVID(ctx, jwtsvid.Params{Audience: "partner"})
			if err != nil {
				t.Fatalf("%s: FetchJWTSVID: %v", tc.name, err)
			}
			got, err := tc.check.ValidateJWTSVID(ctx, svid.Marshal(), "partner")
			if err != nil || got.ID != tc.id {
				t.Errorf("%s JWT-SVID: %v, %v; want %s", tc.name, got, err, tc.id)
			}
			bundles, err := tc.check.FetchJWTBundles(ctx)
			if err != nil || !bundles.Has(tc.id.TrustDomain()) {
				t.Errorf("%s: FetchJWTBundles = %v, %v; want the partner's JWT bundle", tc.name, bundles, err)
			}
		}
	})

	t.Run("bad relationships are refused naming the flag", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			args []string
			want string
		}{
			{"own trust domain", []string{"--trust-domain", "a.test", "--bundle-endpoint-url", "https://x.test/bundle", "--profile", "https_web"},
				"--trust-domain a.test: is this server's own trust domain"},
			{"http url", []string{"--trust-domain", "d.test", "--bundle-endpoint-url", "http://x.test/bundle", "--profile", "https_web"},
				"--bundle-endpoint-url \"http://x.test/bundle\": want an https:// URL"},
			{"unknown profile", []string{"--trust-domain", "d.test", "--bundle-endpoint-url", "https://x.test/bundle", "--profile", "https_magic"},
				"--profile \"https_magic\": use https_web or https_spiffe"},
			{"bundle of the wrong trust domain", []string{"--trust-domain", "d.test", "--bundle-endpoint-url", "https://" + b.http + "/bundle",
				"--profile", "https_spiffe", "--endpoint-spiffe-id", "spiffe://d.test/signet/server", "--trust-bundle", bBundle},
				"--trust-bundle: bundle is for the wrong trust domain"},
		} {
			_, errOut, err := signetRun(append([]string{"federation", "create", "--admin-socket", a.adminSock}, tc.args...)...)
			if err == nil || !strings.Contains(errOut, tc.want) {
				t.Errorf("federation create (%s): %v, stderr %q; want %q", tc.name, err, errOut, tc.want)
			}
		}
	})

	t.Run("a lying endpoint's bundle is refused", func(t *testing.T) {
		// c.test's endpoint, claimed to be e.test's: its CA names c.test.
		a.cli(t, "federation", "create", "--trust-domain", "e.test", "--bundle-endpoint-url", "https://"+c.http+"/bundle", "--profile", "https_web")
		v := a.refreshFailing(t, "e.test")
		if v.Status != "failing (no bundle)" || !strings.Contains(v.LastError, "wrong trust domain") {
			t.Errorf("federation refresh e.test = %+v, want the bundle refused for the wrong trust domain", v)
		}
		if show := a.cli(t, "federation", "show", "e.test"); !strings.Contains(show, "wrong trust domain") {
			t.Errorf("federation show e.test:\n%s\nwant the error", show)
		}
		a.cli(t, "federation", "delete", "e.test")
	})

	t.Run("an unreachable endpoint keeps the last good bundle", func(t *testing.T) {
		before := a.federation(t, "show", "c.test")
		c.server.stop()
		v := a.refreshFailing(t, "c.test")
		if v.LastError == "" || v.Failures == 0 || v.BundleSequence != before.BundleSequence || !strings.HasPrefix(v.Status, "failing (keeping") {
			t.Errorf("federation refresh of a stopped endpoint = %+v, want an error and the last good bundle kept", v)
		}
		// Workloads keep the bundle.
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		if set, err := aClient.FetchX509Bundles(ctx); err != nil || !set.Has(spiffeid.RequireTrustDomainFromString("c.test")) {
			t.Errorf("FetchX509Bundles after the failed refresh = %v, %v; want c.test kept", set, err)
		}
	})

	t.Run("delete stops serving the bundle", func(t *testing.T) {
		a.cli(t, "federation", "delete", "c.test")
		eventually(t, 20*time.Second, "c.test bundle gone from the Workload API", func() error {
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
			defer cancel()
			set, err := aClient.FetchX509Bundles(ctx)
			if err != nil {
				return err
			}
			if set.Has(spiffeid.RequireTrustDomainFromString("c.test")) {
				return fmt.Errorf("c.test still served")
			}
			return nil
		})
		if _, errOut, err := signetRun("federation", "show", "c.test", "--admin-socket", a.adminSock); err == nil || !strings.Contains(errOut, "no federation relationship") {
			t.Errorf("federation show (deleted): %v, %q; want not found", err, errOut)
		}
	})
}
