//go:build linux

package workload_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"sync"
	"testing"

	workloadpb "github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	sysunix "golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
)

// childEnv makes the test binary act as a workload that connects to the
// socket named in SIGNET_SOCKET, passes the connection to its parent on fd 3
// and exits when its stdin closes.
const childEnv = "SIGNET_WORKLOAD_TEST_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "" {
		os.Exit(m.Run())
	}
	c, err := net.Dial("unix", os.Getenv("SIGNET_SOCKET"))
	if err == nil {
		var f *os.File
		if f, err = c.(*net.UnixConn).File(); err == nil {
			err = sysunix.Sendmsg(3, []byte{0}, sysunix.UnixRights(int(f.Fd())), nil, 0)
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	_, _ = io.Copy(io.Discard, os.Stdin)
	os.Exit(0)
}

// TestStreamEndsWhenCallerExits passes a connection from a child process to
// this one: the stream the child's connection carries must end once the
// child is gone, even though the connection lives on.
func TestStreamEndsWhenCallerExits(t *testing.T) {
	e := start(t)
	e.src.SetEntries(e.entry(t, webID, "", mine))

	client, exit := childClient(t, e)
	stream, err := client.FetchX509SVID(withHeader(testCtx(t)), &workloadpb.X509SVIDRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatalf("first response while the child runs: %v", err)
	}

	exit()
	e.src.SetEntries(e.entry(t, webID, "", mine)) // a rotation: a new response is due
	_, err = stream.Recv()
	wantCode(t, "stream after its caller exited", err, codes.PermissionDenied)
}

// childClient starts a child process (this test binary as childEnv) that
// connects to e's socket and passes its connection to this process, and
// returns a Workload API client over that connection (so every call is
// attested as the child) and the function that makes the child exit and
// waits for it.
func childClient(t *testing.T, e *env) (workloadpb.SpiffeWorkloadAPIClient, func()) {
	t.Helper()
	fds, err := sysunix.Socketpair(sysunix.AF_UNIX, sysunix.SOCK_STREAM|sysunix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	ours, theirs := os.NewFile(uintptr(fds[0]), "ours"), os.NewFile(uintptr(fds[1]), "theirs")
	t.Cleanup(func() { ours.Close() })
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"=1", "SIGNET_SOCKET="+e.path)
	cmd.ExtraFiles = []*os.File{theirs}
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	theirs.Close()
	var exited bool
	exit := func() {
		t.Helper()
		if exited {
			return
		}
		exited = true
		stdin.Close()
		if err := cmd.Wait(); err != nil {
			t.Fatalf("child: %v", err)
		}
	}
	t.Cleanup(func() {
		if !exited {
			exited = true
			stdin.Close()
			_ = cmd.Wait()
		}
	})

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
	t.Cleanup(func() { cc.Close() })
	return workloadpb.NewSpiffeWorkloadAPIClient(cc), exit
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
