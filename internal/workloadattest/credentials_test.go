//go:build linux

package workloadattest_test

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/signet-id/signet/internal/errkind"
	"github.com/signet-id/signet/internal/workloadattest"
)

// serve starts a gRPC server with peer credentials on a fresh unix socket.
// Every RPC to any method reports its Peer on the returned channel.
func serve(t *testing.T) (addr string, peers <-chan workloadattest.Peer) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "api.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan workloadattest.Peer, 16)
	srv := grpc.NewServer(
		grpc.Creds(workloadattest.NewCredentials()),
		grpc.UnknownServiceHandler(func(_ any, stream grpc.ServerStream) error {
			p, ok := workloadattest.PeerFromContext(stream.Context())
			if !ok {
				t.Error("PeerFromContext() = false in an RPC, want true")
			}
			ch <- p
			if err := stream.RecvMsg(&emptypb.Empty{}); err != nil {
				return err
			}
			return stream.SendMsg(&emptypb.Empty{})
		}),
	)
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(srv.Stop)
	return "unix://" + path, ch
}

func call(t *testing.T, cc *grpc.ClientConn) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := cc.Invoke(ctx, "/signet.test.Peer/Get", &emptypb.Empty{}, &emptypb.Empty{}); err != nil {
		t.Fatalf("Invoke() = %v", err)
	}
}

func TestPeerCredentials(t *testing.T) {
	addr, peers := serve(t)
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	call(t, cc)
	p := <-peers
	if p.PID != int32(os.Getpid()) || p.UID != uint32(os.Getuid()) || p.GID != uint32(os.Getgid()) {
		t.Errorf("Peer = %v, want pid=%d uid=%d gid=%d", p, os.Getpid(), os.Getuid(), os.Getgid())
	}
	if err := p.CheckAlive(); err != nil {
		t.Errorf("CheckAlive() on a live caller = %v, want nil", err)
	}

	// Closing the connection closes the pidfd: the Peer no longer vouches
	// for anything.
	if err := cc.Close(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for p.CheckAlive() == nil {
		if time.Now().After(deadline) {
			t.Fatal("CheckAlive() still nil 5s after the connection closed")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := p.CheckAlive(); !errkind.Is(err, errkind.PermissionDenied) {
		t.Errorf("CheckAlive() after close = %v, want PermissionDenied", err)
	}
}

func TestPeerZeroValue(t *testing.T) {
	if err := (workloadattest.Peer{PID: int32(os.Getpid())}).CheckAlive(); !errkind.Is(err, errkind.PermissionDenied) {
		t.Errorf("Peer{}.CheckAlive() = %v, want PermissionDenied", err)
	}
	if _, ok := workloadattest.PeerFromContext(context.Background()); ok {
		t.Error("PeerFromContext(background) = true, want false")
	}
}

func TestServerHandshakeRefusesTCP(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		c, err := net.Dial("tcp", l.Addr().String())
		if err == nil {
			defer c.Close()
			time.Sleep(100 * time.Millisecond)
		}
	}()
	c, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, _, err := workloadattest.NewCredentials().ServerHandshake(c); err == nil {
		t.Error("ServerHandshake(tcp conn) = nil error, want an error")
	}
}
