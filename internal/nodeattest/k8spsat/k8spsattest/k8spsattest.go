// Package k8spsattest is a fake Kubernetes API server for tests of k8s_psat:
// an httptest TLS server on 127.0.0.1 that speaks the real
// authentication.k8s.io/v1 TokenReview, core v1 Pod and Node JSON (encoded
// from the k8s.io/api types) and issues projected service account tokens
// signed with a key made when it starts. Its TokenReview checks what a real
// API server checks for a bound token: the signature, expiry and audience,
// and that the pod the token is bound to still exists with the same UID.
package k8spsattest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/google/uuid"
	authv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/signet-id/signet/internal/nodeattest/k8spsat"
)

// Issuer is the iss of the tokens the fake issues.
const Issuer = "https://kubernetes.default.svc.cluster.local"

// Cluster is a running fake API server. Its methods are safe for
// concurrent use.
type Cluster struct {
	// URL is the API server's base URL (https://127.0.0.1:port).
	URL string

	srv    *httptest.Server
	key    *ecdsa.PrivateKey
	signer jose.Signer
	// bearer is the credential the kubeconfig carries; other callers are
	// refused with 401.
	bearer string

	mu    sync.Mutex
	pods  map[string]*corev1.Pod // by namespace/name
	nodes map[string]*corev1.Node
	// deny makes every review unauthenticated with this error.
	deny string
	// afterReview runs after each review is answered.
	afterReview func()
	reviews     int
}

// Start starts a fake API server, closed when t ends.
func Start(t testing.TB) *Cluster {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	c := &Cluster{key: key, signer: signer, bearer: rand.Text(), pods: map[string]*corev1.Pod{}, nodes: map[string]*corev1.Node{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /apis/authentication.k8s.io/v1/tokenreviews", c.tokenReview)
	mux.HandleFunc("GET /api/v1/namespaces/{ns}/pods/{name}", c.getPod)
	mux.HandleFunc("GET /api/v1/nodes/{name}", c.getNode)
	c.srv = httptest.NewTLSServer(c.authenticate(mux))
	c.URL = c.srv.URL
	t.Cleanup(c.srv.Close)
	return c
}

// Close stops the API server: later calls cannot connect.
func (c *Cluster) Close() { c.srv.Close() }

// Kubeconfig writes a kubeconfig for the API server (its CA and the
// server's bearer token) in dir and returns its path.
func (c *Cluster) Kubeconfig(t testing.TB, dir string) string {
	t.Helper()
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.srv.Certificate().Raw})
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["fake"] = &clientcmdapi.Cluster{Server: c.URL, CertificateAuthorityData: ca}
	cfg.AuthInfos["signet-server"] = &clientcmdapi.AuthInfo{Token: c.bearer}
	cfg.Contexts["fake"] = &clientcmdapi.Context{Cluster: "fake", AuthInfo: "signet-server"}
	cfg.CurrentContext = "fake"
	path := filepath.Join(dir, "kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// AddNode creates a node with a fresh UID.
func (c *Cluster) AddNode(name string, labels map[string]string) *corev1.Node {
	n := &corev1.Node{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Node"},
		ObjectMeta: metav1.ObjectMeta{Name: name, UID: types.UID(uuid.NewString()), Labels: labels, CreationTimestamp: metav1.Now()},
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.nodes[name] = n
	return n.DeepCopy()
}

// AddPod creates (or replaces, with a new UID) a running pod of service
// account sa scheduled on node.
func (c *Cluster) AddPod(ns, name, sa, node string, labels map[string]string) *corev1.Pod {
	p := &corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID(uuid.NewString()), Labels: labels, CreationTimestamp: metav1.Now()},
		Spec: corev1.PodSpec{ServiceAccountName: sa, NodeName: node, Containers: []corev1.Container{
			{Name: "agent", Image: "ghcr.io/signet-id/signet:test"},
		}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning},
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pods[ns+"/"+name] = p
	return p.DeepCopy()
}

// Pod returns the pod ns/name, or nil.
func (c *Cluster) Pod(ns, name string) *corev1.Pod {
	c.mu.Lock()
	defer c.mu.Unlock()
	if p := c.pods[ns+"/"+name]; p != nil {
		return p.DeepCopy()
	}
	return nil
}

// DeletePod deletes a pod.
func (c *Cluster) DeletePod(ns, name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.pods, ns+"/"+name)
}

// Deny makes every later review answer authenticated=false with reason
// (empty: answer normally again).
func (c *Cluster) Deny(reason string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.deny = reason
}

// AfterReview sets f to run after each review is answered, before the
// verifier reads the pod (to change the cluster in between).
func (c *Cluster) AfterReview(f func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.afterReview = f
}

// Reviews returns how many token reviews were answered.
func (c *Cluster) Reviews() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reviews
}

// kubeClaims are the private claims of a projected token.
type kubeClaims struct {
	Namespace      string `json:"namespace"`
	ServiceAccount ref    `json:"serviceaccount"`
	Pod            *ref   `json:"pod,omitempty"`
	Node           *ref   `json:"node,omitempty"`
}

type ref struct {
	Name string `json:"name"`
	UID  string `json:"uid"`
}

type claims struct {
	jwt.Claims
	Kubernetes kubeClaims `json:"kubernetes.io"`
}

// Token issues a projected service account token of pod for audience,
// valid for ttl from now (a negative ttl: already expired).
func (c *Cluster) Token(t testing.TB, pod *corev1.Pod, audience string, ttl time.Duration) string {
	t.Helper()
	now := time.Now()
	iat := now
	if ttl < 0 {
		iat = now.Add(2 * ttl)
	}
	c.mu.Lock()
	node := c.nodes[pod.Spec.NodeName]
	c.mu.Unlock()
	cl := claims{
		Claims: jwt.Claims{
			Issuer: Issuer, Subject: "system:serviceaccount:" + pod.Namespace + ":" + pod.Spec.ServiceAccountName,
			Audience: jwt.Audience{audience}, Expiry: jwt.NewNumericDate(now.Add(ttl)),
			IssuedAt: jwt.NewNumericDate(iat), NotBefore: jwt.NewNumericDate(iat), ID: uuid.NewString(),
		},
		Kubernetes: kubeClaims{
			Namespace:      pod.Namespace,
			ServiceAccount: ref{Name: pod.Spec.ServiceAccountName, UID: uuid.NewString()},
			Pod:            &ref{Name: pod.Name, UID: string(pod.UID)},
		},
	}
	if node != nil {
		cl.Kubernetes.Node = &ref{Name: node.Name, UID: string(node.UID)}
	}
	tok, err := jwt.Signed(c.signer).Claims(cl).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// authenticate refuses callers without the kubeconfig's bearer token, as
// an API server refuses anonymous requests.
func (c *Cluster) authenticate(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+c.bearer {
			writeStatus(w, apierrors.NewUnauthorized("Unauthorized").ErrStatus)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// tokenReview answers a TokenReview as kube-apiserver does.
func (c *Cluster) tokenReview(w http.ResponseWriter, r *http.Request) {
	var tr authv1.TokenReview
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&tr); err != nil {
		writeStatus(w, apierrors.NewBadRequest("malformed TokenReview: "+err.Error()).ErrStatus)
		return
	}
	if tr.APIVersion != "authentication.k8s.io/v1" || tr.Kind != "TokenReview" {
		writeStatus(w, apierrors.NewBadRequest("want a TokenReview of authentication.k8s.io/v1, got "+tr.APIVersion+" "+tr.Kind).ErrStatus)
		return
	}
	tr.Status = c.review(tr.Spec)
	c.mu.Lock()
	after := c.afterReview
	c.reviews++
	c.mu.Unlock()
	writeJSON(w, http.StatusCreated, &tr)
	if after != nil {
		after()
	}
}

// review checks a token as the API server's service account
// authenticator does.
func (c *Cluster) review(spec authv1.TokenReviewSpec) authv1.TokenReviewStatus {
	fail := func(reason string) authv1.TokenReviewStatus {
		return authv1.TokenReviewStatus{Authenticated: false, Error: reason}
	}
	c.mu.Lock()
	deny := c.deny
	c.mu.Unlock()
	if deny != "" {
		return fail(deny)
	}
	tok, err := jwt.ParseSigned(spec.Token, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		return fail("[invalid bearer token, token lookup failed]")
	}
	var cl claims
	if err := tok.Claims(&c.key.PublicKey, &cl); err != nil {
		return fail("[invalid bearer token, square/go-jose: error in cryptographic primitive]")
	}
	auds := spec.Audiences
	if len(auds) == 0 {
		auds = []string{"https://kubernetes.default.svc.cluster.local"}
	}
	var matched []string
	for _, a := range auds {
		if cl.Audience.Contains(a) {
			matched = append(matched, a)
		}
	}
	if len(matched) == 0 {
		return fail("[invalid bearer token, token audiences " + strings.Join(cl.Audience, ",") + " is invalid for the target audiences]")
	}
	if err := cl.ValidateWithLeeway(jwt.Expected{Issuer: Issuer, Time: time.Now()}, 0); err != nil {
		return fail("[invalid bearer token, service account token has expired]")
	}
	k := cl.Kubernetes
	if k.Pod == nil {
		return fail("[invalid bearer token, token is not bound to a pod]")
	}
	c.mu.Lock()
	pod := c.pods[k.Namespace+"/"+k.Pod.Name]
	c.mu.Unlock()
	if pod == nil || string(pod.UID) != k.Pod.UID {
		return fail("[invalid bearer token, pod " + k.Namespace + "/" + k.Pod.Name + " does not exist or has another UID]")
	}
	extra := map[string]authv1.ExtraValue{
		k8spsat.ExtraPodName:                         {k.Pod.Name},
		k8spsat.ExtraPodUID:                          {k.Pod.UID},
		"authentication.kubernetes.io/credential-id": {"JTI=" + cl.ID},
	}
	if k.Node != nil {
		extra[k8spsat.ExtraNodeName] = authv1.ExtraValue{k.Node.Name}
		extra["authentication.kubernetes.io/node-uid"] = authv1.ExtraValue{k.Node.UID}
	}
	return authv1.TokenReviewStatus{
		Authenticated: true,
		Audiences:     slices.Clone(matched),
		User: authv1.UserInfo{
			Username: cl.Subject,
			UID:      k.ServiceAccount.UID,
			Groups:   []string{"system:serviceaccounts", "system:serviceaccounts:" + k.Namespace, "system:authenticated"},
			Extra:    extra,
		},
	}
}

func (c *Cluster) getPod(w http.ResponseWriter, r *http.Request) {
	ns, name := r.PathValue("ns"), r.PathValue("name")
	c.mu.Lock()
	p := c.pods[ns+"/"+name]
	c.mu.Unlock()
	if p == nil {
		writeStatus(w, apierrors.NewNotFound(schema.GroupResource{Resource: "pods"}, name).ErrStatus)
		return
	}
	writeJSON(w, http.StatusOK, p)
}

func (c *Cluster) getNode(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	c.mu.Lock()
	n := c.nodes[name]
	c.mu.Unlock()
	if n == nil {
		writeStatus(w, apierrors.NewNotFound(schema.GroupResource{Resource: "nodes"}, name).ErrStatus)
		return
	}
	writeJSON(w, http.StatusOK, n)
}

// writeStatus writes a metav1.Status failure, as the API server does.
func writeStatus(w http.ResponseWriter, st metav1.Status) {
	st.TypeMeta = metav1.TypeMeta{APIVersion: "v1", Kind: "Status"}
	writeJSON(w, int(st.Code), &st)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
