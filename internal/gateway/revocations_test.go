package gateway_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"

	"github.com/signet-id/signet/internal/gateway"
	adminv1 "github.com/signet-id/signet/internal/gen/signet/admin/v1"
	commonv1 "github.com/signet-id/signet/internal/gen/signet/common/v1"
	"github.com/signet-id/signet/internal/testenv"
)

// fixedSVID is an x509svid.Source that always presents one SVID.
type fixedSVID struct{ s *x509svid.SVID }

func (f fixedSVID) GetX509SVID() (*x509svid.SVID, error) { return f.s, nil }

// TestIngressRefusesRevokedPeer: once an operator revokes a peer's
// X509-SVID, the gateway (told by its local agent) refuses handshakes
// with it, while the peer's fresh SVID gets through.
func TestIngressRefusesRevokedPeer(t *testing.T) {
	env := testenv.New(t)
	const gwID, peerID = "spiffe://example.org/gw", "spiffe://example.org/peer"
	uid := []*commonv1.Selector{{Type: "unix", Value: "uid:" + strconv.Itoa(os.Getuid())}}
	env.CreateEntry(&commonv1.Entry{SpiffeId: gwID, ParentId: "spiffe://example.org/node/gw", Selectors: uid})
	gwAgent := env.StartAgent("spiffe://example.org/node/gw")
	gwAgent.AwaitReady()
	env.CreateEntry(&commonv1.Entry{SpiffeId: peerID, ParentId: "spiffe://example.org/node/peer",
		Selectors: uid})
	peerAgent := env.StartAgent("spiffe://example.org/node/peer")
	peerAgent.AwaitReady()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	peerSrc, err := workloadapi.NewX509Source(ctx, workloadapi.WithClientOptions(workloadapi.WithAddr("unix://"+peerAgent.Config.SocketPath)))
	if err != nil {
		t.Fatal(err)
	}
	defer peerSrc.Close()
	gwSrc, err := workloadapi.NewX509Source(ctx, workloadapi.WithClientOptions(workloadapi.WithAddr("unix://"+gwAgent.Config.SocketPath)))
	if err != nil {
		t.Fatal(err)
	}
	defer gwSrc.Close()

	bl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	backend := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, r.Header.Get(gateway.HeaderClientID))
	})}
	go func() { _ = backend.Serve(bl) }()
	defer backend.Close()

	revs := gateway.NewAgentRevocations("unix://"+gwAgent.Config.SocketPath, nil)
	go revs.Run(ctx)
	<-revs.Ready()
	g := runGateway(t, "ingress: [{listen: '127.0.0.1:0', forward: '"+bl.Addr().String()+
		"', protocol: tcp, allow: ['subject.id == \""+peerID+"\"']}]\n", gwSrc, gateway.Options{Revoked: revs.Revoked})
	addr := g.Addr("ingress[0]").String()
	handshake := func(svids x509svid.Source) error {
		c, err := tls.Dial("tcp", addr, tlsconfig.MTLSClientConfig(svids, peerSrc, tlsconfig.AuthorizeID(spiffeid.RequireFromString(gwID))))
		if err != nil {
			return err
		}
		defer c.Close()
		// TLS 1.3: the server's verdict on the client certificate arrives
		// with the first read.
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err = c.Write([]byte("GET / HTTP/1.0\r\n\r\n"))
		if err == nil {
			_, err = c.Read(make([]byte, 1))
		}
		return err
	}
	old, err := peerSrc.GetX509SVID()
	if err != nil {
		t.Fatal(err)
	}
	if err := handshake(fixedSVID{old}); err != nil {
		t.Fatalf("peer before revocation: %v", err)
	}
	serial := strings.ToLower(old.Certificates[0].SerialNumber.Text(16))
	if _, err := env.Admin.RevokeSVIDs(env.Ctx(), &adminv1.RevokeSVIDsRequest{Target: &adminv1.RevokeSVIDsRequest_Serial{Serial: serial}}); err != nil {
		t.Fatalf("RevokeSVIDs: %v", err)
	}
	testenv.WaitFor(t, 10*time.Second, "the gateway refusing the revoked svid", func() error {
		if err := handshake(fixedSVID{old}); err == nil {
			return errors.New("handshake with the revoked svid succeeded")
		}
		return nil
	})
	testenv.WaitFor(t, 10*time.Second, "the peer's fresh svid accepted", func() error {
		s, err := peerSrc.GetX509SVID()
		if err != nil {
			return err
		}
		if s.Certificates[0].SerialNumber.Cmp(old.Certificates[0].SerialNumber) == 0 {
			return fmt.Errorf("peer still holds serial %s", serial)
		}
		return handshake(peerSrc)
	})
}
