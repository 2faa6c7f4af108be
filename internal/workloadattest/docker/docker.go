// Package docker is the "docker" workload attestor: it describes a caller
// that runs in a Docker (or Podman) container by what the engine reports of
// that container.
//
// Selectors, all of type "docker":
//
//	label:<key>:<value>   each label of the container
//	image_id:<id>         the image the container runs (sha256:...)
//	image_name:<name>     the image name the container was created with
//	env:<NAME>:<value>    the variable NAME of the container's environment,
//	                      only for the names the configuration lists
//
// The container ID comes from /proc/<pid>/cgroup (package cgroup); after
// reading it the attestor checks through the connection's pidfd that the
// caller is still the process that connected. The container is inspected
// through the Docker Engine API on its unix socket (GET
// /containers/{id}/json); Podman's Docker-compatible socket answers the
// same. A container's configuration does not change, so answers are
// remembered per container ID, and concurrent callers of one container
// share one request. A caller in no container, or in one the engine does
// not know (a Kubernetes container of another runtime), gets no docker
// selectors.
package docker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/signet-id/signet/internal/errkind"
	"github.com/signet-id/signet/internal/model"
	"github.com/signet-id/signet/internal/workloadattest"
	"github.com/signet-id/signet/internal/workloadattest/cgroup"
)

// Name is the attestor's name and selector type.
const Name = "docker"

// DefaultSocket is the Docker Engine's socket.
const DefaultSocket = "/var/run/docker.sock"

const (
	// MaxInspectSize bounds the engine's answer about one container.
	MaxInspectSize = 4 << 20
	requestTimeout = 10 * time.Second
	maxCached      = 4096
	cacheTTL       = time.Minute
	maxSocketPath  = 107
)

// Log keys.
const (
	logKeyPID         = "pid"
	logKeyContainerID = "container_id"
	logKeyErr         = "err"
)

// Config configures the attestor (workload_attestors.docker):
//
//	docker:
//	  socket: /var/run/docker.sock     # podman: /run/podman/podman.sock
//	  env: [APP_ROLE]                  # variables to select on; none by default
type Config struct {
	Socket string   `yaml:"socket"`
	Env    []string `yaml:"env"`
}

// Validate reports a socket path that is not absolute and malformed
// variable names.
func (c Config) Validate() error {
	var errs []error
	if c.Socket != "" && (!filepath.IsAbs(c.Socket) || len(c.Socket) > maxSocketPath) {
		errs = append(errs, fmt.Errorf("socket: %q: want an absolute unix socket path of at most %d bytes, such as %s",
			c.Socket, maxSocketPath, DefaultSocket))
	}
	for i, n := range c.Env {
		if n == "" || strings.ContainsAny(n, "= \t\n\x00") {
			errs = append(errs, fmt.Errorf("env[%d]: %q is not a variable name (no '=', spaces or NUL)", i, n))
		}
	}
	return errors.Join(errs...)
}

// Attestor is the docker workload attestor. It is safe for concurrent use.
type Attestor struct {
	cfg      Config
	log      *slog.Logger
	client   *http.Client
	procRoot string
	now      func() time.Time

	flight singleflight.Group
	mu     sync.Mutex
	cache  map[string]cached // by container ID
}

type cached struct {
	sels    []model.Selector // nil: the engine does not know the container
	expires time.Time
}

var _ workloadattest.Attestor = (*Attestor)(nil)

// New returns an attestor. It does not connect until the first caller in a
// container. A nil log discards log lines.
func New(cfg Config, log *slog.Logger) (*Attestor, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Socket == "" {
		cfg.Socket = DefaultSocket
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	socket := cfg.Socket
	dialer := &net.Dialer{Timeout: requestTimeout}
	return &Attestor{
		cfg: cfg,
		log: log.With("attestor", Name),
		client: &http.Client{
			Timeout: requestTimeout,
			Transport: &http.Transport{
				DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
					return dialer.DialContext(ctx, "unix", socket)
				},
				MaxIdleConnsPerHost: 2,
				IdleConnTimeout:     time.Minute,
			},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		procRoot: "/proc",
		now:      time.Now,
		cache:    make(map[string]cached),
	}, nil
}

// Name returns "docker".
func (a *Attestor) Name() string { return Name }

// Attest returns the docker selectors of p, none when p runs in no
// container the engine knows.
func (a *Attestor) Attest(ctx context.Context, p workloadattest.Peer) ([]model.Selector, error) {
	if p.PID <= 0 {
		return nil, errkind.New(errkind.PermissionDenied,
			"cannot attest the caller: it runs in a PID namespace the agent cannot see; run the agent in the host PID namespace")
	}
	lines, err := cgroup.Read(a.procRoot, p.PID)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ESRCH) {
			return nil, errkind.Wrap(errkind.PermissionDenied, fmt.Errorf("read cgroup: %w", err),
				fmt.Sprintf("cannot attest the caller: process %d exited", p.PID))
		}
		return nil, fmt.Errorf("attest pid %d: read cgroup: %w", p.PID, err)
	}
	c, err := cgroup.FindContainer(lines)
	if err != nil {
		return nil, fmt.Errorf("attest pid %d: %w", p.PID, err)
	}
	if err := p.CheckAlive(); err != nil {
		return nil, err
	}
	if c.ID == "" {
		return nil, nil
	}
	sels, err := a.inspect(ctx, c.ID)
	if err != nil {
		a.log.Warn("cannot inspect the caller's container; refusing the caller", logKeyPID, p.PID,
			logKeyContainerID, c.ID, logKeyErr, err)
		return nil, errkind.Wrap(errkind.Unavailable, err, "cannot attest the caller: the container engine cannot be asked")
	}
	return slices.Clone(sels), nil
}

// inspect returns the selectors of container id, from the cache or the
// engine.
func (a *Attestor) inspect(ctx context.Context, id string) ([]model.Selector, error) {
	now := a.now()
	a.mu.Lock()
	e, ok := a.cache[id]
	a.mu.Unlock()
	if ok && now.Before(e.expires) {
		return e.sels, nil
	}
	ch := a.flight.DoChan(id, func() (any, error) {
		sels, err := a.get(id)
		if err != nil {
			return nil, err
		}
		a.mu.Lock()
		if len(a.cache) >= maxCached {
			for k, v := range a.cache {
				if !now.Before(v.expires) {
					delete(a.cache, k)
				}
			}
			if len(a.cache) >= maxCached {
				clear(a.cache)
			}
		}
		a.cache[id] = cached{sels: sels, expires: a.now().Add(cacheTTL)}
		a.mu.Unlock()
		return sels, nil
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return nil, r.Err
		}
		return r.Val.([]model.Selector), nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// get asks the engine about container id. Its context is its own: callers
// waiting on it share it.
func (a *Attestor) get(id string) ([]model.Selector, error) {
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://docker/containers/"+id+"/json", nil)
	if err != nil {
		return nil, err
	}
	resp, err := a.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("docker engine at %s: %w", a.cfg.Socket, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxInspectSize+1))
	if err != nil {
		return nil, fmt.Errorf("docker engine: read inspect answer: %w", err)
	}
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return nil, nil // not one of this engine's containers
	case resp.StatusCode != http.StatusOK:
		return nil, fmt.Errorf("docker engine: GET /containers/%.12s/json: %s", id, resp.Status)
	case len(body) > MaxInspectSize:
		return nil, fmt.Errorf("docker engine: inspect answer larger than %d bytes", MaxInspectSize)
	}
	return parseInspect(body, id, a.cfg.Env)
}

// inspectResponse is the part of the engine's container-inspect answer
// (GET /containers/{id}/json) the selectors come from: the fields, JSON
// names and types of moby's api/types/container.InspectResponse and
// Config, which are not linked because their packages (moby's API types,
// OCI image-spec, go-digest) would cost every agent's memory at start-up
// for the four fields read here. Fields not declared are skipped;
// TestInspectMatchesMoby checks the result against moby's types.
type inspectResponse struct {
	ID     string `json:"Id"`
	Image  string
	Config *inspectConfig
}

// inspectConfig is moby's container.Config, the part read.
type inspectConfig struct {
	Image  string
	Labels map[string]string
	Env    []string
}

// parseInspect turns the engine's container-inspect JSON into selectors.
// The answer must be about container id.
func parseInspect(body []byte, id string, env []string) ([]model.Selector, error) {
	var c inspectResponse
	if err := json.Unmarshal(body, &c); err != nil {
		return nil, fmt.Errorf("docker engine: decode inspect answer: %w", err)
	}
	if c.ID != id {
		return nil, fmt.Errorf("docker engine: inspect answer is about container %.12q, not %.12s", c.ID, id)
	}
	sels := []model.Selector{}
	add := func(k, v string) { sels = append(sels, model.Selector{Type: Name, Value: k + ":" + v}) }
	if c.Image != "" {
		add("image_id", c.Image)
	}
	if c.Config != nil {
		if c.Config.Image != "" {
			add("image_name", c.Config.Image)
		}
		for k, v := range c.Config.Labels {
			add("label", k+":"+v)
		}
		for _, kv := range c.Config.Env {
			k, v, ok := strings.Cut(kv, "=")
			if ok && slices.Contains(env, k) {
				add("env", k+":"+v)
			}
		}
	}
	out := sels[:0]
	for _, s := range sels {
		if s.Validate() == nil {
			out = append(out, s)
		}
	}
	return model.SortSelectors(out), nil
}
