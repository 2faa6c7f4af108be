package main

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/signet-id/signet/internal/atomicfile"
	"github.com/signet-id/signet/internal/ci/ciclient"
	"github.com/signet-id/signet/internal/keyfile"
	"github.com/signet-id/signet/internal/workload"
	"github.com/signet-id/signet/internal/workloadattest"
)

func newCICmd() *cobra.Command {
	cmd := &cobra.Command{Use: "ci", Short: "SPIFFE identity for CI/CD jobs from their OIDC token, without an agent"}
	cmd.AddCommand(newCIExchangeCmd(), newCIRunCmd())
	return cmd
}

// ciFlags are the flags both ci commands share.
type ciFlags struct {
	server, trustBundle, tokenFile, audience, spiffeID string
}

func (f *ciFlags) add(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.server, "server", "", "the server's HTTPS address (http_address), host:port or https URL (required)")
	fl.StringVar(&f.trustBundle, "trust-bundle", "", "PEM file the server is verified with (from signet bundle show, or a web-PKI root); default: the system's roots")
	fl.StringVar(&f.tokenFile, "token-file", "", "file holding the CI OIDC token (default: GitHub Actions' ID token request, or $SIGNET_ID_TOKEN)")
	fl.StringVar(&f.audience, "audience", "", "audience to request the CI token for (default spiffe://TRUST_DOMAIN, read from --trust-bundle)")
	fl.StringVar(&f.spiffeID, "spiffe-id", "", "SPIFFE ID to get when several entries match the job (default: the first by SPIFFE ID)")
}

// setup builds the client and the token source.
func (f *ciFlags) setup() (*ciclient.Client, ciclient.TokenSource, string, error) {
	if f.server == "" {
		return nil, ciclient.TokenSource{}, "", errors.New("--server is required, e.g. --server signet.example.com:8443")
	}
	var roots []*x509.Certificate
	if f.trustBundle != "" {
		data, err := keyfile.Read(f.trustBundle)
		if err != nil {
			return nil, ciclient.TokenSource{}, "", fmt.Errorf("--trust-bundle: %w", err)
		}
		if roots, err = keyfile.Certificates(f.trustBundle, data); err != nil {
			return nil, ciclient.TokenSource{}, "", fmt.Errorf("--trust-bundle: %w", err)
		}
	}
	c, err := ciclient.New(f.server, roots)
	if err != nil {
		return nil, ciclient.TokenSource{}, "", err
	}
	aud := f.audience
	if aud == "" {
		for _, r := range roots {
			if len(r.URIs) == 1 && r.URIs[0].Scheme == "spiffe" && r.URIs[0].Host != "" {
				aud = "spiffe://" + r.URIs[0].Host
				break
			}
		}
		if aud == "" {
			return nil, ciclient.TokenSource{}, "", errors.New("--audience is required when --trust-bundle does not name the trust domain, e.g. --audience spiffe://example.org")
		}
	}
	ts, err := ciclient.FindToken(f.tokenFile, os.Getenv, &http.Client{Timeout: 30 * time.Second})
	return c, ts, aud, err
}

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

func newCIExchangeCmd() *cobra.Command {
	var (
		f    ciFlags
		dir  string
		auds []string
	)
	cmd := &cobra.Command{
		Use:   "exchange",
		Short: "Exchange the job's CI token for an X509-SVID (and JWT-SVIDs) and write them as files",
		Example: `  signet ci exchange --server signet.example.com:8443 --trust-bundle bundle.pem --write ./svid
  signet ci exchange --server signet.example.com:8443 --trust-bundle bundle.pem --write ./svid --jwt-audience https://vault.example.com
  signet ci exchange --token-file job.jwt --server … --trust-bundle bundle.pem --write ./svid`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dir == "" {
				return errors.New("--write DIR is required: where svid.pem, svid.key and bundle.pem go")
			}
			c, ts, aud, err := f.setup()
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), time.Minute)
			defer cancel()
			tok, err := ts.Get(ctx, aud)
			if err != nil {
				return err
			}
			svid, err := c.ExchangeX509(ctx, tok, f.spiffeID)
			if err != nil {
				return err
			}
			if err := os.MkdirAll(dir, 0o700); err != nil {
				return fmt.Errorf("--write: %w", err)
			}
			key, err := ciclient.EncodeKey(svid.Key)
			if err != nil {
				return err
			}
			files := []struct {
				name string
				data []byte
				mode os.FileMode
			}{{"svid.key", key, 0o600}, {"svid.pem", ciclient.EncodeCerts(svid.Chain), 0o644}, {"bundle.pem", ciclient.EncodeCerts(svid.Bundle), 0o644}}
			for _, a := range auds {
				jwt, _, err := c.JWT(ctx, svid, []string{a})
				if err != nil {
					return err
				}
				files = append(files, struct {
					name string
					data []byte
					mode os.FileMode
				}{"jwt-" + unsafeName.ReplaceAllString(a, "_") + ".token", []byte(jwt + "\n"), 0o600})
			}
			for _, fl := range files {
				if err := atomicfile.WriteFile(filepath.Join(dir, fl.name), fl.data, fl.mode); err != nil {
					return fmt.Errorf("--write: %w", err)
				}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s until %s → %s\n", svid.ID, svid.Chain[0].NotAfter.UTC().Format(time.RFC3339), dir)
			return nil
		},
	}
	f.add(cmd)
	cmd.Flags().StringVar(&dir, "write", "", "directory for svid.pem, svid.key (0600) and bundle.pem (required)")
	cmd.Flags().StringArrayVar(&auds, "jwt-audience", nil, "also write a JWT-SVID for this audience as jwt-AUDIENCE.token (repeatable)")
	return cmd
}

func newCIRunCmd() *cobra.Command {
	var f ciFlags
	cmd := &cobra.Command{
		Use:   "run [flags] -- COMMAND [ARGS…]",
		Short: "Run a command with the job's SPIFFE identity on a private Workload API socket",
		Long: `Exchanges the job's CI token for an X509-SVID, serves it (and JWT-SVIDs on request) on a
private Workload API socket for the life of COMMAND, and exports SPIFFE_ENDPOINT_SOCKET to it, so
signet svid fetch, signet jwt fetch and any go-spiffe or Envoy client work unchanged. Before the SVID
expires a fresh CI token is exchanged (GitHub Actions). Exits with COMMAND's exit code.`,
		Example: `  signet ci run --server signet.example.com:8443 --trust-bundle bundle.pem -- ./deploy.sh`,
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, ts, aud, err := f.setup()
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			log := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: slog.LevelWarn}))
			src := &ciclient.Source{Client: c, Tokens: ts, Audience: aud, SPIFFEID: f.spiffeID, Log: log}
			ectx, cancel := context.WithTimeout(ctx, time.Minute)
			err = src.Refresh(ectx)
			cancel()
			if err != nil {
				return err
			}
			dir, err := os.MkdirTemp("", "signet-ci-")
			if err != nil {
				return err
			}
			defer os.RemoveAll(dir)
			sock := filepath.Join(dir, "workload.sock")
			ln, err := workload.Listen(sock)
			if err != nil {
				return err
			}
			ws, err := workload.New(workload.Config{Source: src, Attestors: []workloadattest.Attestor{ciclient.SessionAttestor{}}, Logger: log})
			if err != nil {
				return err
			}
			sctx, cancelServe := context.WithCancel(ctx)
			defer cancelServe()
			go func() { _ = ws.Serve(sctx, ln) }()
			go src.Run(sctx)

			child := exec.CommandContext(ctx, args[0], args[1:]...)
			child.Stdin, child.Stdout, child.Stderr = os.Stdin, cmd.OutOrStdout(), cmd.ErrOrStderr()
			child.Env = append(os.Environ(), "SPIFFE_ENDPOINT_SOCKET=unix://"+sock)
			child.Cancel = func() error { return child.Process.Signal(syscall.SIGTERM) }
			child.WaitDelay = 10 * time.Second
			err = child.Run()
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				code := ee.ExitCode()
				if code < 0 {
					code = 128 + int(syscall.SIGTERM)
				}
				return &exitError{code: code}
			}
			if err != nil {
				return fmt.Errorf("run %s: %w", args[0], err)
			}
			return nil
		},
	}
	f.add(cmd)
	return cmd
}
