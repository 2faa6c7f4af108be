//go:build linux

package unix_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	sysunix "golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/signet-id/signet/internal/errkind"
	"github.com/signet-id/signet/internal/model"
	"github.com/signet-id/signet/internal/workloadattest"
	"github.com/signet-id/signet/internal/workloadattest/unix"
)

// The test binary doubles as the workload: run with childEnv set, it acts as
// a child process instead of running tests.
const (
	childEnv    = "SIGNET_UNIX_ATTEST_CHILD"
	childCall   = "call" // make one RPC to the socket in argv, then exit
	childPassFD = "pass" // connect, send the connection to fd 3, exit on stdin EOF
	method      = "/signet.test.Attest/Run"
)

func TestMain(m *testing.M) {
	switch os.Getenv(childEnv) {
	case "":
		os.Exit(m.Run())
	case childCall:
		os.Exit(runChildCall(os.Getenv("SIGNET_SOCKET")))
	case childPassFD:
		os.Exit(runChildPassFD(os.Getenv("SIGNET_SOCKET")))
	default:
		os.Exit(2)
	}
}

func runChildCall(path string) int {
	cc, err := grpc.NewClient("unix://"+path, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := cc.Invoke(ctx, method, &emptypb.Empty{}, &emptypb.Empty{}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

func runChildPassFD(path string) int {
	c, err := net.Dial("unix", path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	f, err := c.(*net.UnixConn).File()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := sysunix.Sendmsg(3, []byte{0}, sysunix.UnixRights(int(f.Fd())), nil, 0); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	_, _ = io.Copy(io.Discard, os.Stdin) // wait for the parent's go-ahead
	return 0
}

type result struct {
	peer workloadattest.Peer
	sels []model.Selector
	err  error
}

// serve runs a gRPC server with peer credentials on a fresh unix socket. Each
// RPC is attested with a and the outcome reported on the channel.
func serve(t *testing.T, a *unix.Attestor) (path string, results <-chan result) {
	t.Helper()
	path = filepath.Join(t.TempDir(), "api.sock")
	return path, serveAt(t, a, path)
}

// serveAt is serve on the socket path.
func serveAt(t *testing.T, a *unix.Attestor, path string) <-chan result {
	t.Helper()
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan result, 16)
	srv := grpc.NewServer(
		grpc.Creds(workloadattest.NewCredentials()),
		grpc.UnknownServiceHandler(func(_ any, stream grpc.ServerStream) error {
			if err := stream.RecvMsg(&emptypb.Empty{}); err != nil {
				return err
			}
			p, _ := workloadattest.PeerFromContext(stream.Context())
			sels, err := a.Attest(stream.Context(), p)
			ch <- result{peer: p, sels: sels, err: err}
			return stream.SendMsg(&emptypb.Empty{})
		}),
	)
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(srv.Stop)
	return ch
}

func newAttestor(t *testing.T, cfg unix.Config, log *slog.Logger) *unix.Attestor {
	t.Helper()
	a, err := unix.New(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// selfCall makes one RPC from this process.
func selfCall(t *testing.T, path string) {
	t.Helper()
	cc, err := grpc.NewClient("unix://"+path, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := cc.Invoke(ctx, method, &emptypb.Empty{}, &emptypb.Empty{}); err != nil {
		t.Fatalf("Invoke() = %v", err)
	}
}

func child(mode, path string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+mode, "SIGNET_SOCKET="+path)
	cmd.Stderr = os.Stderr
	return cmd
}

// executable returns this test binary's path and SHA-256.
func executable(t *testing.T) (path, sum string) {
	t.Helper()
	path, err := os.Readlink("/proc/self/exe")
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.Sum256(data)
	return path, hex.EncodeToString(h[:])
}

func has(sels []model.Selector, value string) bool {
	return slices.Contains(sels, model.Selector{Type: "unix", Value: value})
}

func TestAttestChildProcess(t *testing.T) {
	path, results := serve(t, newAttestor(t, unix.DefaultConfig(), nil))
	cmd := child(childCall, path)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r := <-results
	if err := cmd.Wait(); err != nil {
		t.Fatalf("child: %v", err)
	}
	if r.err != nil {
		t.Fatalf("Attest(child) = %v", r.err)
	}
	if r.peer.PID != int32(cmd.Process.Pid) {
		t.Errorf("Peer.PID = %d, want the child's %d", r.peer.PID, cmd.Process.Pid)
	}
	exe, sum := executable(t)
	want := []string{
		"uid:" + strconv.Itoa(os.Getuid()),
		"gid:" + strconv.Itoa(os.Getgid()),
		"path:" + exe,
		"sha256:" + sum,
	}
	if u, err := user.Current(); err == nil {
		want = append(want, "user:"+u.Username)
	}
	if g, err := user.LookupGroupId(strconv.Itoa(os.Getgid())); err == nil {
		want = append(want, "group:"+g.Name)
	}
	groups, err := os.Getgroups()
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range groups {
		want = append(want, "supplementary_gid:"+strconv.Itoa(g))
	}
	for _, w := range want {
		if !has(r.sels, w) {
			t.Errorf("Attest(child) = %v, want it to contain unix:%s", r.sels, w)
		}
	}
	for _, s := range r.sels {
		if s.Type != "unix" {
			t.Errorf("Attest(child) returned selector %v, want type unix", s)
		}
	}
}

// TestAttestExitedProcess hands a connection from a child to this process,
// the way a workload can pass its socket on, then lets the child exit: the
// connection lives on, but its caller is gone and must not be attested,
// whether reaped or still a zombie.
func TestAttestExitedProcess(t *testing.T) {
	t.Run("reaped", func(t *testing.T) { testAttestExited(t, true) })
	t.Run("zombie", func(t *testing.T) { testAttestExited(t, false) })
}

func testAttestExited(t *testing.T, reap bool) {
	path, results := serve(t, newAttestor(t, unix.DefaultConfig(), nil))
	fds, err := sysunix.Socketpair(sysunix.AF_UNIX, sysunix.SOCK_STREAM|sysunix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	ours, theirs := os.NewFile(uintptr(fds[0]), "ours"), os.NewFile(uintptr(fds[1]), "theirs")
	defer ours.Close()
	cmd := child(childPassFD, path)
	cmd.ExtraFiles = []*os.File{theirs}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	theirs.Close()
	defer func() {
		stdin.Close()
		if !reap {
			_ = cmd.Wait()
		}
	}()

	conn := receiveConn(t, int(ours.Fd()))
	var once sync.Once
	cc, err := grpc.NewClient("passthrough:///child",
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(context.Context, string) (net.Conn, error) {
			var c net.Conn
			once.Do(func() { c = conn })
			if c == nil {
				return nil, errors.New("the passed connection is gone")
			}
			return c, nil
		}))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	// While the child lives, the connection is the child's.
	if err := cc.Invoke(ctx, method, &emptypb.Empty{}, &emptypb.Empty{}); err != nil {
		t.Fatal(err)
	}
	r := <-results
	if r.err != nil || r.peer.PID != int32(cmd.Process.Pid) {
		t.Fatalf("Attest(live child) = pid %d, %v; want pid %d, nil", r.peer.PID, r.err, cmd.Process.Pid)
	}

	stdin.Close()
	if reap {
		if err := cmd.Wait(); err != nil {
			t.Fatalf("child: %v", err)
		}
	} else {
		waitZombie(t, cmd.Process.Pid)
	}
	if err := cc.Invoke(ctx, method, &emptypb.Empty{}, &emptypb.Empty{}); err != nil {
		t.Fatal(err)
	}
	r = <-results
	t.Logf("Attest(exited child) = %v", r.err)
	if !errkind.Is(r.err, errkind.PermissionDenied) || !strings.Contains(r.err.Error(), "exited") {
		t.Errorf("Attest(exited child) = %v, %v; want a PermissionDenied error saying it exited", r.sels, r.err)
	}
	if r.sels != nil {
		t.Errorf("Attest(exited child) selectors = %v, want none", r.sels)
	}
}

// waitZombie waits until pid has exited but is not reaped.
func waitZombie(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			t.Fatal(err)
		}
		if i := bytes.LastIndexByte(data, ')'); i > 0 && len(data) > i+2 && data[i+2] == 'Z' {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("process %d did not become a zombie", pid)
}

func receiveConn(t *testing.T, fd int) net.Conn {
	t.Helper()
	buf, oob := make([]byte, 1), make([]byte, sysunix.CmsgSpace(4))
	_, oobn, _, _, err := sysunix.Recvmsg(fd, buf, oob, sysunix.MSG_CMSG_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := sysunix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		t.Fatalf("control messages = %d, %v; want 1", len(msgs), err)
	}
	rights, err := sysunix.ParseUnixRights(&msgs[0])
	if err != nil || len(rights) != 1 {
		t.Fatalf("passed fds = %v, %v; want 1", rights, err)
	}
	f := os.NewFile(uintptr(rights[0]), "passed")
	defer f.Close()
	c, err := net.FileConn(f)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestAttestUnreachablePeers(t *testing.T) {
	a := newAttestor(t, unix.DefaultConfig(), nil)
	tests := []struct {
		name string
		peer workloadattest.Peer
		want string
	}{
		{"other pid namespace", workloadattest.Peer{PID: 0, UID: 1000}, "PID namespace"},
		{"no pidfd", workloadattest.Peer{PID: int32(os.Getpid())}, "pidfd"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sels, err := a.Attest(context.Background(), tt.peer)
			if !errkind.Is(err, errkind.PermissionDenied) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Attest(%v) = %v, %v; want PermissionDenied mentioning %q", tt.peer, sels, err, tt.want)
			}
		})
	}
}

func TestAttestConfig(t *testing.T) {
	exe, sum := executable(t)
	var logs bytes.Buffer
	var mu sync.Mutex
	log := slog.New(slog.NewTextHandler(&lockedWriter{w: &logs, mu: &mu}, nil))
	tests := []struct {
		name               string
		cfg                unix.Config
		wantPath, wantHash bool
	}{
		{"default", unix.DefaultConfig(), true, true},
		{"zero config: no path discovery", unix.Config{}, false, false},
		{"above the size limit", unix.Config{DiscoverWorkloadPath: true, WorkloadSizeLimit: 1024}, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path, results := serve(t, newAttestor(t, tt.cfg, log))
			for range 2 { // the second call hits the hash cache
				selfCall(t, path)
				r := <-results
				if r.err != nil {
					t.Fatalf("Attest(self) = %v", r.err)
				}
				if got := has(r.sels, "path:"+exe); got != tt.wantPath {
					t.Errorf("path selector present = %v, want %v (%v)", got, tt.wantPath, r.sels)
				}
				if got := has(r.sels, "sha256:"+sum); got != tt.wantHash {
					t.Errorf("sha256 selector present = %v, want %v (%v)", got, tt.wantHash, r.sels)
				}
			}
		})
	}
	mu.Lock()
	defer mu.Unlock()
	if n := strings.Count(logs.String(), "too large to hash"); n != 1 {
		t.Errorf("logged %q %d times, want once:\n%s", "too large to hash", n, logs.String())
	}
}

func TestNewRejectsNegativeLimit(t *testing.T) {
	if _, err := unix.New(unix.Config{WorkloadSizeLimit: -1}, nil); !errkind.Is(err, errkind.InvalidArgument) {
		t.Errorf("New(limit -1) = %v, want InvalidArgument", err)
	}
}

type lockedWriter struct {
	w  io.Writer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// BenchmarkAttest measures one attestation of this process (cached hash).
func BenchmarkAttest(b *testing.B) {
	a, err := unix.New(unix.DefaultConfig(), nil)
	if err != nil {
		b.Fatal(err)
	}
	peers := make(chan workloadattest.Peer, 1)
	path := filepath.Join(b.TempDir(), "api.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		b.Fatal(err)
	}
	srv := grpc.NewServer(grpc.Creds(workloadattest.NewCredentials()),
		grpc.UnknownServiceHandler(func(_ any, stream grpc.ServerStream) error {
			p, _ := workloadattest.PeerFromContext(stream.Context())
			peers <- p
			if err := stream.RecvMsg(&emptypb.Empty{}); err != nil {
				return err
			}
			return stream.SendMsg(&emptypb.Empty{})
		}))
	go func() { _ = srv.Serve(l) }()
	defer srv.Stop()
	cc, err := grpc.NewClient("unix://"+path, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	defer cc.Close()
	if err := cc.Invoke(context.Background(), method, &emptypb.Empty{}, &emptypb.Empty{}); err != nil {
		b.Fatal(err)
	}
	p := <-peers
	ctx := context.Background()
	if _, err := a.Attest(ctx, p); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := a.Attest(ctx, p); err != nil {
			b.Fatal(err)
		}
	}
}
