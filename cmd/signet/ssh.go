package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"time"

	"github.com/spf13/cobra"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	gossh "golang.org/x/crypto/ssh"

	"github.com/signet-id/signet/internal/atomicfile"
	sshprovider "github.com/signet-id/signet/internal/broker/provider/ssh"
)

// newSSHCmd is `signet ssh`: what an sshd host needs from Signet's SSH
// user CAs, fetched from the server's HTTPS address.
func newSSHCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "ssh", Short: "SSH user certificates: the CA key for TrustedUserCAKeys and the KRL for RevokedKeys"}
	var f sshFetch
	ca := &cobra.Command{Use: "ca", Short: "The SSH user CAs of the broker's ssh credentials"}
	show := &cobra.Command{
		Use:     "show [--credential NAME]",
		Short:   "Print the CA public keys (authorized_keys format, one per ssh credential) for sshd's TrustedUserCAKeys",
		Example: "  signet ssh ca show --broker https://signet.example.com:8443 > /etc/ssh/signet_user_ca.pub",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			b, err := f.get(cmd, sshprovider.PathCA)
			if err != nil {
				return err
			}
			if len(b) == 0 {
				return errors.New("the server returned no CA key")
			}
			_, err = cmd.OutOrStdout().Write(b)
			return err
		},
	}
	f.addFlags(show)
	ca.AddCommand(show)

	var kf sshFetch
	var output string
	krl := &cobra.Command{
		Use:   "krl [--credential NAME] [--output FILE]",
		Short: "Fetch the key revocation list (OpenSSH KRL) for sshd's RevokedKeys; refreshed by every lease revoke",
		Example: "  signet ssh krl --broker https://signet.example.com:8443 --output /etc/ssh/signet_revoked.krl   # e.g. every minute from cron\n" +
			"  signet ssh krl > /etc/ssh/signet_revoked.krl",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			b, err := kf.get(cmd, sshprovider.PathKRL)
			if err != nil {
				return err
			}
			if len(b) < 8 || string(b[:6]) != "SSHKRL" {
				return errors.New("the server's answer is not an OpenSSH KRL")
			}
			if output != "" {
				// Replaced atomically: sshd never reads half a list.
				if err := atomicfile.WriteFile(output, b, 0o644); err != nil {
					return fmt.Errorf("--output: %w", err)
				}
				return nil
			}
			_, err = cmd.OutOrStdout().Write(b)
			return err
		},
	}
	kf.addFlags(krl)
	krl.Flags().StringVarP(&output, "output", "O", "", "write the KRL to FILE, replacing it atomically (default: stdout)")
	cmd.AddCommand(ca, krl)
	return cmd
}

// sshFetch fetches a public document from the server's HTTPS address.
type sshFetch struct {
	wl         workloadConn
	broker     string
	credential string
	cacert     string
}

func (f *sshFetch) addFlags(cmd *cobra.Command) {
	f.wl.addFlags(cmd)
	cmd.Flags().StringVar(&f.broker, "broker", "", "the server's HTTPS base URL, https://HOST:PORT (default: $"+brokerURLEnv+", else the URL the agent learned from its server)")
	cmd.Flags().StringVar(&f.credential, "credential", "", "only this ssh credential (default: all of them)")
	cmd.Flags().StringVar(&f.cacert, "cacert", "", "PEM file of CAs that sign the server's HTTPS certificate (default: the trust bundle from the Workload API)")
}

func (f *sshFetch) get(cmd *cobra.Command, path string) ([]byte, error) {
	u, err := f.wl.brokerURL(cmd, f.broker)
	if err != nil {
		return nil, err
	}
	tlsCfg, err := f.tlsConfig(cmd)
	if err != nil {
		return nil, err
	}
	target := u.JoinPath(path)
	if f.credential != "" {
		target.RawQuery = url.Values{"credential": {f.credential}}.Encode()
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, target.String(), nil)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: tlsCfg}}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("server %s: %w", u.Host, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, fmt.Errorf("server %s: %w", u.Host, err)
	}
	if resp.StatusCode == http.StatusNotFound && f.credential == "" {
		return nil, fmt.Errorf("server %s has no ssh credentials configured (HTTP 404)", u.Host)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("server %s: HTTP %d: %s", u.Host, resp.StatusCode, firstLine(b))
	}
	return b, nil
}

func firstLine(b []byte) string {
	s := string(b)
	for i, r := range s {
		if r == '\n' || i > 200 {
			return s[:i]
		}
	}
	return s
}

// tlsConfig trusts --cacert, or the X.509 bundles the Workload API hands
// out (the server presents its SVID on the HTTPS address).
func (f *sshFetch) tlsConfig(cmd *cobra.Command) (*tls.Config, error) {
	if f.cacert != "" {
		b, err := os.ReadFile(f.cacert)
		if err != nil {
			return nil, fmt.Errorf("--cacert: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("--cacert: %s holds no PEM certificate", f.cacert)
		}
		return &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool}, nil
	}
	ctx, client, closeFn, err := f.wl.client(cmd)
	if err != nil {
		return nil, fmt.Errorf("%w (or pass --cacert)", err)
	}
	defer closeFn()
	bundles, err := client.FetchX509Bundles(ctx)
	if err != nil {
		return nil, workloadErr(err)
	}
	cfg := tlsconfig.TLSClientConfig(bundles, tlsconfig.AuthorizeAny())
	cfg.MinVersion = tls.VersionTLS12
	return cfg, nil
}

// sshKeyPair is a key generated for `credential get --write`: the private
// key never leaves this machine; the broker certifies its public half.
type sshKeyPair struct {
	priv ed25519.PrivateKey
	pub  string // authorized_keys format
}

func newSSHKeyPair() (*sshKeyPair, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	sp, err := gossh.NewPublicKey(priv.Public())
	if err != nil {
		return nil, err
	}
	return &sshKeyPair{priv: priv, pub: string(gossh.MarshalAuthorizedKey(sp))}, nil
}

// writeSSH writes the private key to path (0600) and the certificate to
// path-cert.pub, where ssh -i path finds it.
func (k *sshKeyPair) writeSSH(path, cert, comment string) error {
	blk, err := gossh.MarshalPrivateKey(k.priv, comment)
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(path, pem.EncodeToMemory(blk), 0o600); err != nil {
		return fmt.Errorf("--write: %w", err)
	}
	if err := atomicfile.WriteFile(path+"-cert.pub", []byte(cert+"\n"), 0o644); err != nil {
		return fmt.Errorf("--write: %w", err)
	}
	return nil
}
