package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
)

// BenchmarkIngressVsNginx measures mTLS termination in front of one Go
// HTTP backend: the gateway's http ingress route against Debian nginx
// configured for the same (TLS 1.3, client certificate verified against
// the trust bundle, keep-alive to the backend), and the backend directly.
// A client of 16 keep-alive connections sends GETs for 5s per target and
// reports requests/s, p50/p99 latency and the proxy's CPU time per
// request (proxy-cpu-us/req: the gateway process, or nginx's master and
// workers, from /proc), which the machine's other load does not skew.
// Each target is also measured on one connection with one request at a
// time (/1conn), where the latency added by the hop is not hidden in the
// queueing of the loaded run. Run with -benchtime 1x.
func BenchmarkIngressVsNginx(b *testing.B) {
	if os.Getuid() != 0 {
		b.Skip("needs root to run the gateway under its own group ID")
	}
	nginx, err := exec.LookPath("nginx")
	if err != nil {
		b.Skip("nginx not installed (apt-get install nginx)")
	}
	d := deployLegacy(b)

	// The backend.
	bl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	body := []byte(strings.Repeat("x", 1024))
	bs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(body) })}
	go func() { _ = bs.Serve(bl) }()
	b.Cleanup(func() { bs.Close() })
	backend := bl.Addr().String()

	// The client's SVID (/web) and the bundle.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var x *workloadapi.X509Context
	waitFor(b, 30*time.Second, func() error {
		var err error
		x, err = workloadapi.FetchX509Context(ctx, workloadapi.WithAddr("unix://"+d.socket))
		if err == nil && len(x.SVIDs) < 2 {
			err = fmt.Errorf("%d SVIDs", len(x.SVIDs))
		}
		return err
	})
	var web tls.Certificate
	for _, s := range x.SVIDs {
		if s.ID.Path() == "/web" {
			web.PrivateKey = s.PrivateKey
			for _, c := range s.Certificates {
				web.Certificate = append(web.Certificate, c.Raw)
			}
		}
	}
	bundle, _ := x.Bundles.GetX509BundleForTrustDomain(spiffeid.RequireTrustDomainFromString("example.org"))
	roots := x509.NewCertPool()
	for _, c := range bundle.X509Authorities() {
		roots.AddCert(c)
	}

	// The gateway.
	cfg := filepath.Join(d.dir, "bench-gateway.yaml")
	writeBenchFile(b, cfg, fmt.Sprintf("agent_socket: %s\ningress:\n  - {listen: 127.0.0.1:0, forward: %s, protocol: http, allow: ['subject.id == \"spiffe://example.org/web\"']}\n", d.socket, backend))
	gw := startAs(b, "gateway", gatewayGID, "gateway", "run", "--config", cfg, "--log-format", "json")
	gwAddr := routeAddrs(b, gw, 1)["ingress[0]"]

	// nginx with the gateway's kind of certificate: the /web SVID as the
	// server certificate, the bundle for client certificates.
	ndir := filepath.Join(d.dir, "nginx")
	if err := os.MkdirAll(filepath.Join(ndir, "logs"), 0o755); err != nil {
		b.Fatal(err)
	}
	certPEM, keyPEM, _ := x.SVIDs[0].Marshal()
	bundlePEM, _ := bundle.Marshal()
	writeBenchFile(b, filepath.Join(ndir, "cert.pem"), string(certPEM))
	writeBenchFile(b, filepath.Join(ndir, "key.pem"), string(keyPEM))
	writeBenchFile(b, filepath.Join(ndir, "bundle.pem"), string(bundlePEM))
	// nginx refuses port 0, so the test binds 127.0.0.1:0 and hands the
	// socket to nginx (see startNginx); the config names the bound address.
	nl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	nginxAddr := nl.Addr().String()
	writeBenchFile(b, filepath.Join(ndir, "nginx.conf"), fmt.Sprintf(`worker_processes auto;
pid %[1]s/nginx.pid;
error_log %[1]s/logs/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path %[1]s/tmp; proxy_temp_path %[1]s/tmp; fastcgi_temp_path %[1]s/tmp; uwsgi_temp_path %[1]s/tmp; scgi_temp_path %[1]s/tmp;
  upstream app { server %[2]s; keepalive 32; }
  server {
    listen %[3]s ssl;
    ssl_protocols TLSv1.3;
    ssl_certificate %[1]s/cert.pem;
    ssl_certificate_key %[1]s/key.pem;
    ssl_client_certificate %[1]s/bundle.pem;
    ssl_verify_client on;
    location / {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-Forwarded-Client-Spiffe-Id $ssl_client_s_dn;
    }
  }
}
`, ndir, backend, nginxAddr))
	nginxPID := startNginx(b, nl.(*net.TCPListener), nginx, "-p", ndir, "-c", filepath.Join(ndir, "nginx.conf"), "-g", "daemon off;")

	mtls := &tls.Config{Certificates: []tls.Certificate{web}, RootCAs: roots, InsecureSkipVerify: true, MinVersion: tls.VersionTLS13} //nolint:gosec // SVIDs carry no DNS name; this is a load client
	for _, target := range []struct {
		name, url string
		tls       *tls.Config
		pid       int // the proxy's process, 0 for none
	}{
		{"direct", "http://" + backend + "/", nil, 0},
		{"gateway", "https://" + gwAddr + "/", mtls, gw.cmd.Process.Pid},
		{"nginx", "https://" + nginxAddr + "/", mtls, nginxPID},
	} {
		b.Run(target.name, func(b *testing.B) {
			for range b.N {
				cpu0 := procTreeCPU(target.pid)
				rps, p50, p99 := load(b, target.url, target.tls, 16, 5*time.Second)
				if target.pid != 0 {
					b.ReportMetric(float64((procTreeCPU(target.pid)-cpu0).Microseconds())/(rps*5), "proxy-cpu-us/req")
				}
				b.ReportMetric(rps, "req/s")
				b.ReportMetric(float64(p50.Microseconds())/1000, "p50-ms")
				b.ReportMetric(float64(p99.Microseconds())/1000, "p99-ms")
			}
		})
		// One connection, one request at a time: the latency a hop adds,
		// without the queueing of the loaded run.
		b.Run(target.name+"/1conn", func(b *testing.B) {
			for range b.N {
				rps, p50, p99 := load(b, target.url, target.tls, 1, 3*time.Second)
				b.ReportMetric(rps, "req/s")
				b.ReportMetric(float64(p50.Microseconds())/1000, "p50-ms")
				b.ReportMetric(float64(p99.Microseconds())/1000, "p99-ms")
			}
		})
	}
}

// startNginx runs nginx on a listening socket the test bound, through
// nginx's inherited-socket hand-over (the NGINX environment variable, a
// list of descriptor numbers each followed by ";", which its binary
// upgrade uses): a listen directive naming the socket's address takes the
// socket instead of binding. Nothing else can take the port in between,
// unlike a port closed by the test and bound again by nginx, and clients
// still reach nginx over TCP like the gateway, unlike a unix socket. Had
// nginx ignored the socket, its own bind would fail with EADDRINUSE (the
// socket is open in nginx) and the benchmark with it. ln is closed here.
// It returns the nginx master's process ID.
func startNginx(b *testing.B, ln *net.TCPListener, nginx string, args ...string) int {
	f, err := ln.File() // a dup: same open file description
	ln.Close()
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	cmd := exec.Command(nginx, args...)
	cmd.ExtraFiles = []*os.File{f} // descriptor 3 in nginx
	cmd.Env = append(os.Environ(), "NGINX=3;")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	// Handing f over made the shared description blocking, and nginx
	// keeps an inherited socket as it finds it: a worker woken with the
	// others would block in accept. Nothing has connected yet.
	if err := syscall.SetNonblock(int(f.Fd()), true); err != nil {
		b.Fatal(err)
	}
	return cmd.Process.Pid
}

// procTreeCPU returns the user plus system CPU time of process pid and
// its live children (nginx's workers), from /proc/PID/stat; 0 for pid 0.
func procTreeCPU(pid int) time.Duration {
	if pid == 0 {
		return 0
	}
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	var ticks int64
	for _, p := range stats {
		st, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		end := strings.LastIndexByte(string(st), ')')
		if end < 0 {
			continue
		}
		f := strings.Fields(string(st[end+2:])) // from field 3 (state)
		if len(f) < 13 {
			continue
		}
		self, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(p, "/proc/"), "/stat"))
		ppid, _ := strconv.Atoi(f[1])
		if self != pid && ppid != pid {
			continue
		}
		u, _ := strconv.ParseInt(f[11], 10, 64)
		s, _ := strconv.ParseInt(f[12], 10, 64)
		ticks += u + s
	}
	return time.Duration(ticks) * (time.Second / 100) // USER_HZ is 100 on Linux
}

// load sends GETs to url over conns keep-alive connections for dur and
// returns requests/s and the p50 and p99 latency.
func load(b *testing.B, url string, cfg *tls.Config, conns int, dur time.Duration) (float64, time.Duration, time.Duration) {
	tr := &http.Transport{TLSClientConfig: cfg, MaxIdleConnsPerHost: conns, MaxConnsPerHost: conns, ForceAttemptHTTP2: false}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	// Warm up: establish the connections.
	for range conns {
		resp, err := client.Get(url)
		if err != nil {
			b.Fatalf("GET %s: %v", url, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	var (
		mu  sync.Mutex
		all []time.Duration
		wg  sync.WaitGroup
	)
	deadline := time.Now().Add(dur)
	for range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var lat []time.Duration
			for time.Now().Before(deadline) {
				start := time.Now()
				resp, err := client.Get(url)
				if err != nil {
					b.Errorf("GET %s: %v", url, err)
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					b.Errorf("GET %s: %s", url, resp.Status)
					return
				}
				lat = append(lat, time.Since(start))
			}
			mu.Lock()
			all = append(all, lat...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	slices.Sort(all)
	if len(all) == 0 {
		b.Fatal("no requests completed")
	}
	return float64(len(all)) / dur.Seconds(), all[len(all)/2], all[len(all)*99/100]
}

func writeBenchFile(tb testing.TB, path, content string) {
	tb.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		tb.Fatal(err)
	}
}
