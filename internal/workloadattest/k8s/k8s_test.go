//go:build linux

package k8s_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/signet-id/signet/internal/config"
	"github.com/signet-id/signet/internal/errkind"
	"github.com/signet-id/signet/internal/model"
	"github.com/signet-id/signet/internal/testenv"
	"github.com/signet-id/signet/internal/workloadattest/k8s"
	"github.com/signet-id/signet/internal/workloadattest/workloadattesttest"
)

const (
	podUID      = "2c48913c-b29f-11e7-9350-020968147796"
	checkoutID  = "9be9a4d6cd4a9d1b3c1f0a5e6f7b8c9d0e1f2a3b4c5d6e7f8091a2b3c4d5e6f7"
	pendingID   = "abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789"
	cgroupLine  = "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod2c48913c_b29f_11e7_9350_020968147796.slice/cri-containerd-%s.scope\n"
	wantedToken = "token-1"
)

// kubelet is a fake kubelet: /pods over TLS, answering the PodList in body
// to requests that bear the current token.
type kubelet struct {
	srv   *httptest.Server
	ca    *x509.Certificate
	body  atomic.Pointer[[]byte]
	token atomic.Pointer[string]
	calls atomic.Int64
	delay time.Duration
}

func newKubelet(t testing.TB, body []byte) *kubelet {
	t.Helper()
	k := &kubelet{}
	k.setBody(body)
	tok := wantedToken
	k.token.Store(&tok)
	k.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		k.calls.Add(1)
		if k.delay > 0 {
			time.Sleep(k.delay)
		}
		if r.URL.Path != "/pods" || r.Method != http.MethodGet {
			http.NotFound(w, r)
			return
		}
		if r.Header.Get("Authorization") != "Bearer "+*k.token.Load() {
			http.Error(w, "Unauthorized", http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(*k.body.Load())
	}))
	ca, cert := newServingCert(t)
	k.ca = ca
	k.srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	k.srv.StartTLS()
	t.Cleanup(k.srv.Close)
	return k
}

// newServingCert makes a CA, made at test time, and a serving certificate
// it signs for 127.0.0.1, as a kubelet with serverTLSBootstrap has.
func newServingCert(t testing.TB) (*x509.Certificate, tls.Certificate) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "kubernetes"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "system:node:worker-3"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, leaf, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return ca, tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func (k *kubelet) setBody(b []byte) { k.body.Store(&b) }

// caFile writes the fake kubelet's certificate as a CA file.
func (k *kubelet) caFile(t testing.TB) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "ca.crt")
	data := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: k.ca.Raw})
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func writeFile(t testing.TB, path, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}

func fixture(t testing.TB) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "podlist.json"))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

type env struct {
	a         *k8s.Attestor
	k         *kubelet
	tokenPath string
	procRoot  string
	logs      *syncBuffer
}

// newEnv starts a fake kubelet and an attestor that trusts it, with this
// process's cgroup file faked to put it in container id.
func newEnv(t testing.TB, body []byte, id string, mod func(*k8s.Config)) *env {
	t.Helper()
	k := newKubelet(t, body)
	e := &env{k: k, tokenPath: filepath.Join(t.TempDir(), "token"), procRoot: t.TempDir(), logs: &syncBuffer{}}
	writeFile(t, e.tokenPath, wantedToken+"\n")
	e.setCgroup(t, fmt.Sprintf(cgroupLine, id))
	cfg := k8s.Config{
		KubeletURL: k.srv.URL, KubeletCAPath: k.caFile(t), TokenPath: e.tokenPath,
		ContainerWait: config.Duration(600 * time.Millisecond),
	}
	if mod != nil {
		mod(&cfg)
	}
	a, err := k8s.New(cfg, slog.New(slog.NewTextHandler(e.logs, nil)))
	if err != nil {
		t.Fatalf("New() = %v", err)
	}
	k8s.SetProcRoot(a, e.procRoot)
	e.a = a
	return e
}

func (e *env) setCgroup(t testing.TB, content string) {
	writeFile(t, filepath.Join(e.procRoot, strconv.Itoa(os.Getpid()), "cgroup"), content)
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func values(sels []model.Selector) []string {
	var out []string
	for _, s := range sels {
		out = append(out, s.String())
	}
	return out
}

func TestAttestPod(t *testing.T) {
	e := newEnv(t, fixture(t), checkoutID, nil)
	sels, err := e.a.Attest(context.Background(), workloadattesttest.SelfPeer(t))
	if err != nil {
		t.Fatalf("Attest() = %v", err)
	}
	want := []string{
		"k8s:container-image:registry.example.org/shop/checkout:2.3.1",
		"k8s:container-image:registry.example.org/shop/checkout@sha256:0d2c9f6a8b7e5d4c3b2a1908f7e6d5c4b3a29180f7e6d5c4b3a291807f6e5d4c",
		"k8s:container-name:checkout",
		"k8s:node-name:worker-3",
		"k8s:ns:shop",
		"k8s:pod-label:app:checkout",
		"k8s:pod-label:pod-template-hash:7d9c5b6f4",
		"k8s:pod-name:checkout-7d9c5b6f4-x2l8q",
		"k8s:pod-owner:ReplicaSet:checkout-7d9c5b6f4",
		"k8s:pod-uid:" + podUID,
		"k8s:sa:checkout",
	}
	if diff := cmp.Diff(want, values(sels)); diff != "" {
		t.Errorf("Attest() selectors (-want +got):\n%s", diff)
	}
	// A second caller within cache_ttl is served from the same answer.
	if _, err := e.a.Attest(context.Background(), workloadattesttest.SelfPeer(t)); err != nil {
		t.Fatal(err)
	}
	if n := e.k.calls.Load(); n != 1 {
		t.Errorf("kubelet calls = %d, want 1", n)
	}
}

func TestAttestNotInAPod(t *testing.T) {
	e := newEnv(t, fixture(t), checkoutID, nil)
	for _, cg := range []string{
		"0::/system.slice/sshd.service\n",
		"0::/docker/" + checkoutID + "\n",            // a container outside Kubernetes
		"0::/kubepods/burstable/pod" + podUID + "\n", // the pod's own cgroup, no container
	} {
		e.setCgroup(t, cg)
		sels, err := e.a.Attest(context.Background(), workloadattesttest.SelfPeer(t))
		if err != nil || sels != nil {
			t.Errorf("Attest(cgroup %q) = %v, %v; want no selectors and no error", cg, sels, err)
		}
	}
	if n := e.k.calls.Load(); n != 0 {
		t.Errorf("kubelet calls = %d, want 0 for callers in no pod", n)
	}
}

func TestAttestContainerStartsLate(t *testing.T) {
	var list corev1.PodList
	if err := json.Unmarshal(fixture(t), &list); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, fixture(t), pendingID, func(c *k8s.Config) { c.ContainerWait = config.Duration(5 * time.Second) })
	go func() {
		time.Sleep(700 * time.Millisecond)
		list.Items[0].Status.ContainerStatuses[1].ContainerID = "containerd://" + pendingID
		body, _ := json.Marshal(list)
		e.k.setBody(body)
	}()
	sels, err := e.a.Attest(context.Background(), workloadattesttest.SelfPeer(t))
	if err != nil {
		t.Fatalf("Attest(late container) = %v", err)
	}
	if !strings.Contains(strings.Join(values(sels), " "), "k8s:container-name:envoy") {
		t.Errorf("Attest(late container) = %v, want container-name:envoy", values(sels))
	}
	if n := e.k.calls.Load(); n < 2 || n > 10 {
		t.Errorf("kubelet calls = %d, want a few retries at most every 250ms", n)
	}
}

func TestAttestContainerNeverAppears(t *testing.T) {
	e := newEnv(t, fixture(t), pendingID, nil)
	_, err := e.a.Attest(context.Background(), workloadattesttest.SelfPeer(t))
	if !errkind.Is(err, errkind.PermissionDenied) || !strings.Contains(err.Error(), "not in the kubelet's status") {
		t.Errorf("Attest(missing container) = %v, want PermissionDenied saying it is not in the kubelet's status", err)
	}
	if !strings.Contains(e.logs.String(), "container not in the kubelet's pod status; refusing the caller") {
		t.Errorf("log = %q, want the refusal logged", e.logs.String())
	}
	if n := e.k.calls.Load(); n < 2 || n > 4 {
		t.Errorf("kubelet calls = %d over a 600ms wait, want 2 to 4", n)
	}
}

func TestAttestPodUIDMismatch(t *testing.T) {
	e := newEnv(t, fixture(t), checkoutID, nil)
	e.setCgroup(t, "0::/kubepods/burstable/pod11111111-2222-3333-4444-555555555555/"+checkoutID+"\n")
	if _, err := e.a.Attest(context.Background(), workloadattesttest.SelfPeer(t)); !errkind.Is(err, errkind.PermissionDenied) {
		t.Errorf("Attest(container of another pod) = %v, want PermissionDenied", err)
	}
}

func TestAttestTokenRotation(t *testing.T) {
	e := newEnv(t, fixture(t), checkoutID, func(c *k8s.Config) { c.CacheTTL = config.Duration(time.Millisecond) })
	if _, err := e.a.Attest(context.Background(), workloadattesttest.SelfPeer(t)); err != nil {
		t.Fatal(err)
	}
	tok := "token-2"
	e.k.token.Store(&tok)
	writeFile(t, e.tokenPath, tok)
	time.Sleep(300 * time.Millisecond) // past cache_ttl and the retry interval
	if _, err := e.a.Attest(context.Background(), workloadattesttest.SelfPeer(t)); err != nil {
		t.Errorf("Attest() after token rotation = %v, want the new token read", err)
	}
}

func TestAttestKubeletFailures(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(*testing.T, *env)
		want string
	}{
		{"unreachable", func(t *testing.T, e *env) { e.k.srv.Close() }, "kubelet"},
		{"wrong token", func(t *testing.T, e *env) { writeFile(t, e.tokenPath, "stolen") }, "401"},
		{"no token", func(t *testing.T, e *env) { _ = os.Remove(e.tokenPath) }, "token_path"},
		{"malformed JSON", func(t *testing.T, e *env) { e.k.setBody([]byte(`{"kind":"PodList","items":[{`)) }, "decode"},
		{"not a pod list", func(t *testing.T, e *env) { e.k.setBody([]byte(`{"kind":"Status","items":[]}`)) }, "PodList"},
		{"wrong type", func(t *testing.T, e *env) { e.k.setBody([]byte(`{"items":[{"metadata":{"uid":7}}]}`)) }, "decode"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, fixture(t), checkoutID, func(c *k8s.Config) { c.ContainerWait = config.Duration(time.Millisecond) })
			tc.mod(t, e)
			_, err := e.a.Attest(context.Background(), workloadattesttest.SelfPeer(t))
			if !errkind.Is(err, errkind.Unavailable) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Attest() = %v, want Unavailable mentioning %q", err, tc.want)
			}
			if !strings.Contains(e.logs.String(), "kubelet unreachable; refusing the caller") {
				t.Errorf("log = %q, want the refusal logged", e.logs.String())
			}
		})
	}
}

func TestKubeletCertificateVerified(t *testing.T) {
	k := newKubelet(t, fixture(t))
	other := newKubelet(t, fixture(t)) // a CA that did not sign k's certificate
	tokenPath := filepath.Join(t.TempDir(), "token")
	writeFile(t, tokenPath, wantedToken)
	a, err := k8s.New(k8s.Config{KubeletURL: k.srv.URL, KubeletCAPath: other.caFile(t), TokenPath: tokenPath,
		ContainerWait: config.Duration(time.Millisecond)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k8s.LookupContainer(context.Background(), a, podUID, checkoutID); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("lookup against an untrusted kubelet = %v, want a certificate error", err)
	}
	if k.calls.Load() != 0 {
		t.Error("the untrusted kubelet was sent a request")
	}
	// Only the explicit skip accepts it.
	a, err = k8s.New(k8s.Config{KubeletURL: k.srv.URL, SkipKubeletVerification: true, TokenPath: tokenPath}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k8s.LookupContainer(context.Background(), a, podUID, checkoutID); err != nil {
		t.Errorf("lookup with skip_kubelet_verification = %v", err)
	}
}

func TestConcurrentMissesShareOneRequest(t *testing.T) {
	e := newEnv(t, fixture(t), checkoutID, nil)
	e.k.delay = 50 * time.Millisecond
	var wg sync.WaitGroup
	errs := make(chan error, 200)
	for range 200 {
		wg.Go(func() {
			if _, err := k8s.LookupContainer(context.Background(), e.a, podUID, checkoutID); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := e.k.calls.Load(); n != 1 {
		t.Errorf("kubelet calls for 200 concurrent callers = %d, want 1", n)
	}
}

func TestConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  k8s.Config
		want string
	}{
		{"http", k8s.Config{KubeletURL: "http://127.0.0.1:10255"}, "kubelet_url: \"http://127.0.0.1:10255\": the kubelet is asked over https only"},
		{"path", k8s.Config{KubeletURL: "https://127.0.0.1:10250/pods"}, "no user, path or query"},
		{"both", k8s.Config{KubeletCAPath: "/ca", SkipKubeletVerification: true}, "not both"},
		{"negative ttl", k8s.Config{CacheTTL: config.Duration(-time.Second)}, "cache_ttl"},
		{"long wait", k8s.Config{ContainerWait: config.Duration(time.Hour)}, "container_wait"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.cfg.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Validate() = %v, want %q", err, tc.want)
			}
		})
	}
	if err := (k8s.Config{}).Validate(); err != nil {
		t.Errorf("Validate(zero) = %v", err)
	}
	_, err := k8s.New(k8s.Config{KubeletCAPath: filepath.Join(t.TempDir(), "missing.crt")}, nil)
	if err == nil || !strings.Contains(err.Error(), "kubelet_ca_path") || !strings.Contains(err.Error(), "skip_kubelet_verification") {
		t.Errorf("New(missing CA) = %v, want an error naming kubelet_ca_path and the explicit skip", err)
	}
}

// podList builds a PodList of n pods with one running container each, with
// the container IDs and pod UIDs it returns.
func podList(n int) (body []byte, ids, uids []string) {
	var list corev1.PodList
	list.Kind, list.APIVersion = "PodList", "v1"
	for i := range n {
		uid := fmt.Sprintf("%08x-0000-4000-8000-%012x", i, i)
		id := fmt.Sprintf("%064x", i+1)
		list.Items = append(list.Items, corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("web-%d", i), Namespace: "shop", UID: types.UID(uid),
				Labels: map[string]string{"app": "web"}},
			Spec: corev1.PodSpec{ServiceAccountName: "web", NodeName: "worker-1",
				Containers: []corev1.Container{{Name: "web", Image: "web:1"}}},
			Status: corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{
				{Name: "web", Image: "web:1", ContainerID: "containerd://" + id}}},
		})
		ids, uids = append(ids, id), append(uids, uid)
	}
	body, _ = json.Marshal(list)
	return body, ids, uids
}

// TestStaleAnswerServesDuringRefresh: between one and two cache_ttl, the
// previous answer serves a known container while one refresh runs.
func TestStaleAnswerServesDuringRefresh(t *testing.T) {
	e := newEnv(t, fixture(t), checkoutID, func(c *k8s.Config) { c.CacheTTL = config.Duration(400 * time.Millisecond) })
	if _, err := k8s.LookupContainer(context.Background(), e.a, podUID, checkoutID); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	e.k.delay = time.Second // a slow refresh must not hold the caller
	start := time.Now()
	if _, err := k8s.LookupContainer(context.Background(), e.a, podUID, checkoutID); err != nil {
		t.Fatal(err)
	}
	if waited := time.Since(start); waited > 500*time.Millisecond {
		t.Errorf("lookup during a refresh waited %s, want the previous answer at once", waited)
	}
	if err := testenv.Poll(5*time.Second, func() error {
		if n := e.k.calls.Load(); n != 2 {
			return fmt.Errorf("kubelet calls = %d, want 2 (one background refresh)", n)
		}
		return nil
	}); err != nil {
		t.Error(err)
	}
}
