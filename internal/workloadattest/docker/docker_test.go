//go:build linux

package docker_test

import (
	"context"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/signet-id/signet/internal/errkind"
	"github.com/signet-id/signet/internal/model"
	"github.com/signet-id/signet/internal/workloadattest/docker"
	"github.com/signet-id/signet/internal/workloadattest/workloadattesttest"
)

const containerID = "9be9a4d6cd4a9d1b3c1f0a5e6f7b8c9d0e1f2a3b4c5d6e7f8091a2b3c4d5e6f7"

// engine is a fake Docker Engine API on a unix socket, answering
// container inspection with the JSON in body for containerID and 404 (with
// the engine's error body) for any other.
type engine struct {
	socket string
	body   atomic.Pointer[[]byte]
	calls  atomic.Int64
	srv    *http.Server
}

func newEngine(t *testing.T) *engine {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "inspect.json"))
	if err != nil {
		t.Fatal(err)
	}
	e := &engine{socket: filepath.Join(t.TempDir(), "docker.sock")}
	e.body.Store(&data)
	l, err := net.Listen("unix", e.socket)
	if err != nil {
		t.Fatal(err)
	}
	e.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.calls.Add(1)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Api-Version", "1.51")
		if r.Method != http.MethodGet || r.URL.Path != "/containers/"+containerID+"/json" {
			w.WriteHeader(http.StatusNotFound)
			_, _ = w.Write([]byte(`{"message":"No such container: ` + strings.TrimPrefix(r.URL.Path, "/containers/") + `"}`))
			return
		}
		_, _ = w.Write(*e.body.Load())
	})}
	go func() { _ = e.srv.Serve(l) }()
	t.Cleanup(func() { _ = e.srv.Close() })
	return e
}

func newAttestor(t *testing.T, cfg docker.Config, cgroupLine string) *docker.Attestor {
	t.Helper()
	a, err := docker.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	p := filepath.Join(root, strconv.Itoa(os.Getpid()), "cgroup")
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(cgroupLine), 0o644); err != nil {
		t.Fatal(err)
	}
	docker.SetProcRoot(a, root)
	return a
}

func values(sels []model.Selector) []string {
	var out []string
	for _, s := range sels {
		out = append(out, s.String())
	}
	return out
}

func TestAttestContainer(t *testing.T) {
	e := newEngine(t)
	for _, cg := range []string{
		"0::/system.slice/docker-" + containerID + ".scope\n",                                 // cgroup v2, systemd driver
		"12:memory:/docker/" + containerID + "\n1:name=systemd:/docker/" + containerID + "\n", // v1, cgroupfs
	} {
		a := newAttestor(t, docker.Config{Socket: e.socket, Env: []string{"APP_ROLE", "EMPTY", "UNSET"}}, cg)
		sels, err := a.Attest(context.Background(), workloadattesttest.SelfPeer(t))
		if err != nil {
			t.Fatalf("Attest() = %v", err)
		}
		want := []string{
			"docker:env:APP_ROLE:billing",
			"docker:env:EMPTY:", // set but empty; UNSET is not set at all
			"docker:image_id:sha256:3f57d9401f8d42f986df300f0c69192fc41da28ccc8d797829467780db3dd741",
			"docker:image_name:registry.example.org/pay/billing:4.2",
			"docker:label:com.example.team:payments",
			"docker:label:org.opencontainers.image.version:4.2",
		}
		if diff := cmp.Diff(want, values(sels)); diff != "" {
			t.Errorf("Attest(cgroup %q) (-want +got):\n%s", cg, diff)
		}
	}
}

func TestAttestEnvOnlyWhenNamed(t *testing.T) {
	e := newEngine(t)
	a := newAttestor(t, docker.Config{Socket: e.socket}, "0::/docker/"+containerID+"\n")
	sels, err := a.Attest(context.Background(), workloadattesttest.SelfPeer(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range sels {
		if strings.HasPrefix(s.Value, "env:") {
			t.Errorf("Attest() with no env configured = %v: has %v", values(sels), s)
		}
	}
}

func TestAttestCachesAndShares(t *testing.T) {
	e := newEngine(t)
	a := newAttestor(t, docker.Config{Socket: e.socket}, "0::/docker/"+containerID+"\n")
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			if _, err := a.Attest(context.Background(), workloadattesttest.SelfPeer(t)); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if _, err := a.Attest(context.Background(), workloadattesttest.SelfPeer(t)); err != nil {
		t.Fatal(err)
	}
	if n := e.calls.Load(); n != 1 {
		t.Errorf("engine calls = %d, want 1", n)
	}
}

func TestAttestNoDockerSelectors(t *testing.T) {
	e := newEngine(t)
	for _, cg := range []string{
		"0::/system.slice/sshd.service\n",
		"0::/kubepods/burstable/pod2c48913c-b29f-11e7-9350-020968147796/" + strings.Repeat("a", 64) + "\n", // unknown to the engine
	} {
		a := newAttestor(t, docker.Config{Socket: e.socket}, cg)
		sels, err := a.Attest(context.Background(), workloadattesttest.SelfPeer(t))
		if err != nil || len(sels) != 0 {
			t.Errorf("Attest(cgroup %q) = %v, %v; want none", cg, sels, err)
		}
	}
}

func TestAttestEngineFailures(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(*engine)
		want string
	}{
		{"engine down", func(e *engine) { _ = e.srv.Close(); _ = os.Remove(e.socket) }, "docker engine at"},
		{"malformed JSON", func(e *engine) { b := []byte(`{"Id":`); e.body.Store(&b) }, "decode"},
		{"another container", func(e *engine) { b := []byte(`{"Id":"` + strings.Repeat("b", 64) + `"}`); e.body.Store(&b) }, "not " + containerID[:12]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEngine(t)
			tc.mod(e)
			a := newAttestor(t, docker.Config{Socket: e.socket}, "0::/docker/"+containerID+"\n")
			_, err := a.Attest(context.Background(), workloadattesttest.SelfPeer(t))
			if !errkind.Is(err, errkind.Unavailable) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Attest() = %v, want Unavailable mentioning %q", err, tc.want)
			}
		})
	}
}

func TestConfig(t *testing.T) {
	for _, tc := range []struct {
		cfg  docker.Config
		want string
	}{
		{docker.Config{Socket: "docker.sock"}, "socket: \"docker.sock\": want an absolute unix socket path"},
		{docker.Config{Env: []string{"A=B"}}, "env[0]"},
		{docker.Config{Env: []string{""}}, "env[0]"},
	} {
		if err := tc.cfg.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate(%+v) = %v, want %q", tc.cfg, err, tc.want)
		}
	}
}
