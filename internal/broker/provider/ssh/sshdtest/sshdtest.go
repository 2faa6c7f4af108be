// Package sshdtest runs a real OpenSSH server for tests: sshd in inetd
// mode (`sshd -i`), one process per connection accepted on a listener the
// test bound on 127.0.0.1:0, trusting a user CA (TrustedUserCAKeys) and
// refusing what a KRL file revokes (RevokedKeys).
package sshdtest

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"
)

// Path is where Debian's openssh-server installs sshd.
const Path = "/usr/sbin/sshd"

// Server is a running sshd.
type Server struct {
	// Addr is the listener's address.
	Addr string
	// KRLPath is the file sshd reads as RevokedKeys on every connection.
	KRLPath string
	// User is the account logins go to (the user running the test).
	User string

	hostKey gossh.PublicKey
	mu      sync.Mutex
	log     bytes.Buffer
}

// Start runs sshd trusting caPub (authorized_keys format) for
// certificates carrying principal. It skips the test when sshd is not
// installed, and fails it under CI.
func Start(t *testing.T, caPub, principal string) *Server {
	t.Helper()
	if _, err := os.Stat(Path); err != nil {
		msg := "OpenSSH server not installed (apt-get install openssh-server): %v"
		if os.Getenv("CI") != "" {
			t.Fatalf(msg, err)
		}
		t.Skipf(msg, err)
	}
	if os.Geteuid() != 0 {
		t.Skip("sshd in inetd mode needs root")
	}
	// sshd's privilege separation directory.
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	blk, err := gossh.MarshalPrivateKey(priv, "sshdtest host")
	if err != nil {
		t.Fatal(err)
	}
	hostPub, _ := gossh.NewPublicKey(pub)
	s := &Server{KRLPath: filepath.Join(dir, "revoked.krl"), User: "root", hostKey: hostPub}
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	hostKeyPath := write("host_ed25519", pem.EncodeToMemory(blk))
	caPath := write("user_ca.pub", []byte(caPub))
	principals := write("principals", []byte(principal+"\n"))
	write("revoked.krl", nil)
	cfg := write("sshd_config", []byte(strings.Join([]string{
		"HostKey " + hostKeyPath,
		"TrustedUserCAKeys " + caPath,
		"RevokedKeys " + s.KRLPath,
		"AuthorizedPrincipalsFile " + principals,
		"AuthorizedKeysFile none",
		"PubkeyAuthentication yes",
		"PasswordAuthentication no",
		"KbdInteractiveAuthentication no",
		"PermitRootLogin prohibit-password",
		"UsePAM no",
		"StrictModes no",
		"PidFile none",
		"LogLevel VERBOSE",
		"",
	}, "\n")))
	if out, err := exec.Command(Path, "-t", "-f", cfg).CombinedOutput(); err != nil {
		t.Fatalf("sshd -t: %v\n%s", err, out)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.Addr = ln.Addr().String()
	var wg sync.WaitGroup
	var procs sync.Map
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			f, err := c.(*net.TCPConn).File()
			c.Close()
			if err != nil {
				continue
			}
			cmd := exec.Command(Path, "-i", "-e", "-f", cfg)
			cmd.Stdin, cmd.Stdout, cmd.Stderr = f, f, (*logWriter)(s)
			err = cmd.Start()
			f.Close()
			if err != nil {
				s.logf("start sshd -i: %v\n", err)
				continue
			}
			procs.Store(cmd, true)
			wg.Go(func() {
				_ = cmd.Wait()
				procs.Delete(cmd)
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		procs.Range(func(k, _ any) bool {
			_ = k.(*exec.Cmd).Process.Kill()
			return true
		})
		wg.Wait()
		if t.Failed() {
			t.Logf("sshd log:\n%s", s.Log())
		}
	})
	return s
}

type logWriter Server

func (w *logWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.log.Write(b)
}

func (s *Server) logf(format string, args ...any) {
	fmt.Fprintf((*logWriter)(s), format, args...)
}

// Log returns what the sshd processes wrote so far.
func (s *Server) Log() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.log.String()
}

// SetKRL replaces the KRL sshd checks (what an operator's refresh of
// RevokedKeys does).
func (s *Server) SetKRL(krl []byte) error {
	tmp := s.KRLPath + ".tmp"
	if err := os.WriteFile(tmp, krl, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, s.KRLPath)
}

// Login authenticates as s.User with key and its certificate (authorized_keys
// format) and runs a command; nil means sshd accepted the certificate.
func (s *Server) Login(ctx context.Context, key gossh.Signer, certLine string) error {
	pub, _, _, _, err := gossh.ParseAuthorizedKey([]byte(certLine))
	if err != nil {
		return fmt.Errorf("parse certificate: %w", err)
	}
	cert, ok := pub.(*gossh.Certificate)
	if !ok {
		return errors.New("not a certificate")
	}
	cs, err := gossh.NewCertSigner(cert, key)
	if err != nil {
		return err
	}
	d := net.Dialer{Timeout: 10 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", s.Addr)
	if err != nil {
		return err
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	} else {
		_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
	}
	cc, chans, reqs, err := gossh.NewClientConn(conn, s.Addr, &gossh.ClientConfig{
		User: s.User, Auth: []gossh.AuthMethod{gossh.PublicKeys(cs)},
		HostKeyCallback: gossh.FixedHostKey(s.hostKey), Timeout: 10 * time.Second,
	})
	if err != nil {
		conn.Close()
		return err
	}
	client := gossh.NewClient(cc, chans, reqs)
	defer client.Close()
	sess, err := client.NewSession()
	if err != nil {
		return err
	}
	defer sess.Close()
	out, err := sess.Output("id -un")
	if err != nil {
		return fmt.Errorf("run id -un: %w", err)
	}
	if got := strings.TrimSpace(string(out)); got != s.User {
		return fmt.Errorf("logged in as %q, want %q", got, s.User)
	}
	return nil
}
