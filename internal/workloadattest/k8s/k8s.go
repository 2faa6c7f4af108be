// Package k8s is the "k8s" workload attestor: it describes a caller that
// runs in a Kubernetes pod by the pod and container the kubelet reports.
//
// Selectors, all of type "k8s":
//
//	ns:<namespace>                 pod-label:<key>:<value>   (each label)
//	sa:<service account>           pod-owner:<Kind>:<name>   (each owner reference)
//	pod-name:<name>                container-name:<name>
//	pod-uid:<uid>                  container-image:<image>   (status image, spec image and image ID)
//	node-name:<node>
//
// The caller's pod UID and container ID come from /proc/<pid>/cgroup
// (package cgroup); after reading it the attestor checks through the
// connection's pidfd that the caller is still the process that connected.
// The pods come from the kubelet's /pods endpoint, over TLS verified against
// the cluster CA (or kubelet_ca_path), with the service-account token read
// from token_path on every request so a rotated token is picked up. One
// answer serves every caller for cache_ttl (and, while a refresh runs, up to
// twice that), and concurrent misses share one request, so a thousand
// callers cost one kubelet call. A container that has
// just started and is not yet in the kubelet's status is looked for again,
// at most every retryInterval, for container_wait; then the caller is
// refused with a log line saying so. A caller in no pod gets no k8s
// selectors (other attestors still describe it).
package k8s

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/signet-id/signet/internal/errkind"
	"github.com/signet-id/signet/internal/keyfile"
	"github.com/signet-id/signet/internal/model"
	"github.com/signet-id/signet/internal/workloadattest"
	"github.com/signet-id/signet/internal/workloadattest/cgroup"
)

// Name is the attestor's name and selector type.
const Name = "k8s"

// retryInterval is the least time between two requests to the kubelet
// while a caller's container is missing from its answers.
const retryInterval = 250 * time.Millisecond

// requestTimeout bounds one request to the kubelet.
const requestTimeout = 10 * time.Second

// maxTokenSize and maxCASize bound the token and CA files.
const (
	maxTokenSize = 64 << 10
	maxCASize    = 1 << 20
)

// Log keys.
const (
	logKeyPID         = "pid"
	logKeyPodUID      = "pod_uid"
	logKeyContainerID = "container_id"
	logKeyWaited      = "waited"
	logKeyErr         = "err"
	logKeyURL         = "kubelet_url"
)

// Attestor is the k8s workload attestor. It is safe for concurrent use.
type Attestor struct {
	cfg      Config
	log      *slog.Logger
	podsURL  string
	procRoot string
	now      func() time.Time

	flight singleflight.Group
	calls  atomic.Int64 // requests sent to the kubelet

	clientMu sync.Mutex
	client   *http.Client // for the CA in caPEM; fixed with skip_kubelet_verification
	caPEM    []byte

	mu        sync.Mutex
	idx       *podIndex // the latest answer; nil before the first
	lastFetch time.Time // when the latest request was sent
}

var _ workloadattest.Attestor = (*Attestor)(nil)

// New returns an attestor. It reads the kubelet's CA now, so that a
// kubelet_ca_path that cannot be read fails at start; the default CA (the
// service account's) may appear later, which is logged. The CA and the
// token are read again before each request to the kubelet. A nil log
// discards log lines.
func New(cfg Config, log *slog.Logger) (*Attestor, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	explicitCA := cfg.KubeletCAPath != ""
	cfg = cfg.withDefaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	a := &Attestor{
		cfg:      cfg,
		log:      log.With("attestor", Name),
		podsURL:  strings.TrimSuffix(cfg.KubeletURL, "/") + "/pods",
		procRoot: "/proc",
		now:      time.Now,
	}
	if cfg.SkipKubeletVerification {
		a.log.Warn("skip_kubelet_verification is set: the kubelet's certificate is not verified, so anyone who can "+
			"answer on its address can describe pods to this agent", logKeyURL, cfg.KubeletURL)
		a.client = newHTTPClient(&tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: true})
		return a, nil
	}
	if _, err := a.httpClient(); err != nil {
		if explicitCA {
			return nil, err
		}
		// The service account's CA appears when the pod runs; until then
		// (and whenever it cannot be read) callers in pods are refused.
		a.log.Warn("cannot read the kubelet's CA yet; k8s attestation fails until it can", logKeyErr, err)
	}
	return a, nil
}

// newHTTPClient returns the client for the kubelet with tlsCfg.
func newHTTPClient(tlsCfg *tls.Config) *http.Client {
	return &http.Client{
		Timeout: requestTimeout,
		Transport: &http.Transport{
			TLSClientConfig:     tlsCfg,
			ForceAttemptHTTP2:   true,
			MaxIdleConnsPerHost: 2,
			IdleConnTimeout:     time.Minute,
			TLSHandshakeTimeout: requestTimeout,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// httpClient returns the client for the kubelet, verifying its certificate
// against kubelet_ca_path as the file reads now: the CA is read before every
// request (a few per minute at most), so a rotated cluster CA is picked up.
func (a *Attestor) httpClient() (*http.Client, error) {
	if a.cfg.SkipKubeletVerification {
		return a.client, nil
	}
	pem, err := keyfile.ReadLimited(a.cfg.KubeletCAPath, maxCASize)
	if err != nil {
		return nil, fmt.Errorf("kubelet_ca_path: %w: the kubelet's certificate is verified against this CA "+
			"(the default is the service account's ca.crt); name the CA that signs it, or set skip_kubelet_verification: true", err)
	}
	a.clientMu.Lock()
	defer a.clientMu.Unlock()
	if a.client != nil && bytes.Equal(pem, a.caPEM) {
		return a.client, nil
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("kubelet_ca_path: %s holds no PEM certificate", a.cfg.KubeletCAPath)
	}
	if a.client != nil {
		a.client.CloseIdleConnections()
	}
	a.client = newHTTPClient(&tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool})
	a.caPEM = pem
	return a.client, nil
}

// Name returns "k8s".
func (a *Attestor) Name() string { return Name }

// Attest returns the k8s selectors of p, none when p runs in no pod.
func (a *Attestor) Attest(ctx context.Context, p workloadattest.Peer) ([]model.Selector, error) {
	if p.PID <= 0 {
		return nil, errkind.New(errkind.PermissionDenied,
			"cannot attest the caller: it runs in a PID namespace the agent cannot see; run the agent with hostPID")
	}
	lines, err := cgroup.Read(a.procRoot, p.PID)
	if err != nil {
		return nil, procError(p, err)
	}
	c, err := cgroup.FindContainer(lines)
	if err != nil {
		return nil, fmt.Errorf("attest pid %d: %w", p.PID, err)
	}
	// What was read belongs to our caller only if it is still alive.
	if err := p.CheckAlive(); err != nil {
		return nil, err
	}
	if c.PodUID == "" || c.ID == "" {
		return nil, nil
	}
	info, err := a.lookup(ctx, p, c)
	if err != nil {
		return nil, err
	}
	return slices.Clone(info.selectors), nil
}

// lookup finds the container in the kubelet's answers, asking again while
// it is missing until container_wait has passed.
func (a *Attestor) lookup(ctx context.Context, p workloadattest.Peer, c cgroup.Container) (containerInfo, error) {
	start := a.now()
	deadline := start.Add(time.Duration(a.cfg.ContainerWait))
	var notBefore time.Time // zero: any answer within cache_ttl will do
	for {
		idx, err := a.pods(ctx, notBefore)
		if err == nil {
			if info, ok := idx.containers[c.ID]; ok && info.podUID == c.PodUID {
				return info, nil
			}
			notBefore = idx.fetched.Add(time.Nanosecond)
		} else if ctx.Err() != nil {
			return containerInfo{}, fmt.Errorf("attest pid %d: %w", p.PID, ctx.Err())
		}
		if !a.now().Before(deadline) {
			waited := a.now().Sub(start).Round(time.Millisecond)
			if err != nil {
				a.log.Warn("kubelet unreachable; refusing the caller", logKeyPID, p.PID,
					logKeyPodUID, c.PodUID, logKeyContainerID, c.ID, logKeyWaited, waited, logKeyErr, err)
				return containerInfo{}, errkind.Wrap(errkind.Unavailable, err,
					"cannot attest the caller: the kubelet cannot be reached")
			}
			a.log.Warn("container not in the kubelet's pod status; refusing the caller", logKeyPID, p.PID,
				logKeyPodUID, c.PodUID, logKeyContainerID, c.ID, logKeyWaited, waited)
			return containerInfo{}, errkind.New(errkind.PermissionDenied,
				"cannot attest the caller: its container %.12s is not in the kubelet's status of pod %s after %s",
				c.ID, c.PodUID, waited)
		}
		t := time.NewTimer(min(retryInterval, deadline.Sub(a.now())))
		select {
		case <-ctx.Done():
			t.Stop()
			return containerInfo{}, fmt.Errorf("attest pid %d: %w", p.PID, ctx.Err())
		case <-t.C:
		}
	}
}

// pods returns the latest answer of the kubelet if it was asked no earlier
// than notBefore and within cache_ttl, and asks it otherwise. Concurrent
// callers share one request. Between one and two cache_ttl old, an answer
// still serves callers that need no fresher one while a refresh runs, so a
// label removed from a pod stops matching within two cache_ttl.
func (a *Attestor) pods(ctx context.Context, notBefore time.Time) (*podIndex, error) {
	a.mu.Lock()
	idx := a.idx
	a.mu.Unlock()
	ttl := time.Duration(a.cfg.CacheTTL)
	if idx != nil && !idx.fetched.Before(notBefore) {
		switch age := a.now().Sub(idx.fetched); {
		case age < ttl:
			return idx, nil
		case age < 2*ttl && notBefore.IsZero():
			// Refresh in the background and answer from this one
			// meanwhile, so that callers do not queue behind every
			// refresh; a container missing from it still waits for a
			// fresh answer (lookup asks with notBefore).
			a.flight.DoChan("pods", func() (any, error) { return a.fetch() })
			return idx, nil
		}
	}
	ch := a.flight.DoChan("pods", func() (any, error) { return a.fetch() })
	select {
	case r := <-ch:
		if r.Err != nil {
			return nil, r.Err
		}
		return r.Val.(*podIndex), nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// fetch asks the kubelet for its pods, no sooner than retryInterval after
// the previous request. It runs once for every caller waiting on it, so its
// context is its own.
func (a *Attestor) fetch() (*podIndex, error) {
	a.mu.Lock()
	wait := a.lastFetch.Add(retryInterval).Sub(a.now())
	a.mu.Unlock()
	if wait > 0 {
		time.Sleep(wait)
	}
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	sent := a.now()
	a.mu.Lock()
	a.lastFetch = sent
	a.mu.Unlock()
	a.calls.Add(1)
	idx, err := a.get(ctx, sent)
	if err != nil {
		a.log.Warn("cannot get the pods from the kubelet", logKeyURL, a.cfg.KubeletURL, logKeyErr, err)
		return nil, err
	}
	a.mu.Lock()
	if a.idx == nil || a.idx.fetched.Before(idx.fetched) {
		a.idx = idx
	}
	a.mu.Unlock()
	return idx, nil
}

// get does one GET /pods.
func (a *Attestor) get(ctx context.Context, sent time.Time) (*podIndex, error) {
	token, err := readToken(a.cfg.TokenPath)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.podsURL, nil)
	if err != nil {
		return nil, fmt.Errorf("kubelet request: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "application/json")
	client, err := a.httpClient()
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("kubelet: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		return nil, fmt.Errorf("kubelet: GET /pods: %s (a 401 or 403 means the token at token_path may not get nodes/proxy)", resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxPodListSize+1))
	if err != nil {
		return nil, fmt.Errorf("kubelet: read /pods: %w", err)
	}
	if len(body) > MaxPodListSize {
		return nil, fmt.Errorf("kubelet: /pods answered more than %d bytes", MaxPodListSize)
	}
	return parsePods(body, sent)
}

// readToken reads the bearer token, afresh on every request: projected
// tokens are rotated by the kubelet.
func readToken(path string) (string, error) {
	data, err := keyfile.ReadLimited(path, maxTokenSize)
	if err != nil {
		return "", fmt.Errorf("token_path: %w", err)
	}
	tok := strings.TrimSpace(string(data))
	switch {
	case tok == "" || strings.ContainsAny(tok, " \t\r\n"):
		return "", fmt.Errorf("token_path: %s holds no single token", path)
	}
	return tok, nil
}

// procError turns a failure to read /proc/<pid>/cgroup into an attestation
// error: the caller exited (PermissionDenied) or the agent cannot read it.
func procError(p workloadattest.Peer, err error) error {
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ESRCH) {
		return errkind.Wrap(errkind.PermissionDenied, fmt.Errorf("read cgroup: %w", err),
			fmt.Sprintf("cannot attest the caller: process %d exited", p.PID))
	}
	return fmt.Errorf("attest pid %d: read cgroup: %w", p.PID, err)
}
