package agentcli

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/signet-id/signet/internal/atomicfile"
	"github.com/signet-id/signet/internal/brokerclient"
	"github.com/signet-id/signet/internal/config"
)

const endpointEnv = "SPIFFE_ENDPOINT_SOCKET"

// WorkloadConn holds the flags of commands that talk to the agent's
// Workload API, the way any SPIFFE workload does.
type WorkloadConn struct {
	socket  string
	timeout time.Duration
}

// AddFlags registers --socket and --timeout on cmd.
func (w *WorkloadConn) AddFlags(cmd *cobra.Command) {
	cmd.Flags().StringVar(&w.socket, "socket", "", "Workload API socket path (default: $"+endpointEnv+", else "+DefaultAgentSocket+")")
	w.timeout = 10 * time.Second
	cmd.Flags().Var(config.DurationFlag(&w.timeout), "timeout", "how long to wait for the agent")
}

// addr resolves the socket address in the form go-spiffe expects.
func (w *WorkloadConn) addr() (string, string, error) {
	switch {
	case w.socket != "":
		p, err := filepath.Abs(w.socket)
		if err != nil {
			return "", "", err
		}
		return "unix://" + p, p, nil
	case os.Getenv(endpointEnv) != "":
		a := os.Getenv(endpointEnv)
		return a, strings.TrimPrefix(a, "unix://"), nil
	}
	return "unix://" + DefaultAgentSocket, DefaultAgentSocket, nil
}

// BrokerURL resolves the broker's base URL for a command with a --broker
// flag: the flag, else $SIGNET_BROKER_URL, else what the agent on this
// command's socket learned from its server.
func (w *WorkloadConn) BrokerURL(cmd *cobra.Command, flag string) (*url.URL, error) {
	addr, _, err := w.addr()
	if err != nil {
		return nil, err
	}
	return brokerclient.ResolveURL(cmd.Context(), "--broker", flag, brokerclient.FromAgent(addr))
}

// Client connects to the Workload API with the flags' socket and
// timeout; the caller calls the returned function when done.
func (w *WorkloadConn) Client(cmd *cobra.Command) (context.Context, *workloadapi.Client, func(), error) {
	addr, path, err := w.addr()
	if err != nil {
		return nil, nil, nil, err
	}
	if strings.HasPrefix(addr, "unix://") {
		if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
			return nil, nil, nil, fmt.Errorf("no Workload API socket at %s: is `signet agent run` (or `signet dev`) running? Set --socket or %s", path, endpointEnv)
		}
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), w.timeout)
	c, err := workloadapi.New(ctx, workloadapi.WithAddr(addr))
	if err != nil {
		cancel()
		return nil, nil, nil, fmt.Errorf("workload api at %s: %w", addr, err)
	}
	return ctx, c, func() { _ = c.Close(); cancel() }, nil
}

// WorkloadErr explains the Workload API's answers in operator terms.
func WorkloadErr(err error) error {
	switch status.Code(err) {
	case codes.PermissionDenied:
		return permissionDeniedErr(status.Convert(err).Message())
	case codes.Unavailable:
		return fmt.Errorf("agent unavailable (it may not have synced with the server yet): %s", status.Convert(err).Message())
	case codes.DeadlineExceeded:
		return fmt.Errorf("timed out waiting for the agent")
	case codes.InvalidArgument:
		return errors.New(status.Convert(err).Message())
	}
	return err
}

// timeClaims are the JWT claims holding NumericDate times (RFC 7519).
var timeClaims = map[string]bool{"exp": true, "iat": true, "nbf": true}

// jwtClaimRows renders a validated JWT-SVID for a table: claims sorted by
// name, times in RFC 3339.
func jwtClaimRows(svid *jwtsvid.SVID) [][]string {
	keys := make([]string, 0, len(svid.Claims))
	for k := range svid.Claims {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	rows := [][]string{{"Valid:", "true"}, {"SPIFFE ID:", svid.ID.String()}}
	for _, k := range keys {
		v := svid.Claims[k]
		text := fmt.Sprint(v)
		if timeClaims[k] {
			if t, ok := numericDate(v); ok {
				text = t.UTC().Format(time.RFC3339)
			}
		}
		rows = append(rows, []string{"Claim " + k + ":", text})
	}
	return rows
}

// numericDate reads a JWT NumericDate claim as decoded from JSON.
func numericDate(v any) (time.Time, bool) {
	switch n := v.(type) {
	case float64:
		return time.Unix(int64(n), 0), true
	case int64:
		return time.Unix(n, 0), true
	case int:
		return time.Unix(int64(n), 0), true
	case json.Number:
		if i, err := n.Int64(); err == nil {
			return time.Unix(i, 0), true
		}
	}
	return time.Time{}, false
}

// permissionDeniedErr renders the Workload API's PermissionDenied. The agent
// gives it both to callers no entry matches and to callers whose SVIDs all
// expired because it could not renew them (the server unreachable), so
// unless its message says which, both are named, the expiry first: telling
// a registered workload to register is wrong during an outage.
func permissionDeniedErr(msg string) error {
	uid := os.Getuid()
	if strings.Contains(msg, "expired") {
		return fmt.Errorf("no valid identity for this process (uid %d): %s", uid, msg)
	}
	return fmt.Errorf("no identity issued to this process (uid %d): either its SVIDs expired while the agent could not "+
		"reach the server to renew them (check the agent's log and signet healthcheck), or no entry matches it "+
		"(register one whose selectors match, e.g. --selector unix:uid:%d); the agent said: %s", uid, uid, msg)
}

// NewSVIDCmd builds `svid`: fetch X509-SVIDs through the Workload API.
func NewSVIDCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "svid", Short: "Fetch this process's X509-SVIDs from the Workload API"}
	var (
		conn   WorkloadConn
		write  string
		asJSON bool
	)
	fetch := &cobra.Command{
		Use:   "fetch",
		Short: "Fetch and show X509-SVIDs; --write saves them as PEM files",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, c, closeFn, err := conn.Client(cmd)
			if err != nil {
				return err
			}
			defer closeFn()
			x, err := c.FetchX509Context(ctx)
			if err != nil {
				return WorkloadErr(err)
			}
			if write != "" {
				if err := writeSVIDFiles(write, x); err != nil {
					return err
				}
			}
			if asJSON {
				return WriteJSON(cmd.OutOrStdout(), svidsJSON(x))
			}
			return printSVIDs(cmd, x, write)
		},
	}
	conn.AddFlags(fetch)
	fetch.Flags().StringVar(&write, "write", "", "write svid.N.pem, svid.N.key (0600) and bundle.N.pem into this directory")
	AddOutputFlags(fetch, &asJSON, "JSON")
	cmd.AddCommand(fetch)
	return cmd
}

func svidsJSON(x *workloadapi.X509Context) map[string]any {
	var svids []map[string]any
	for _, s := range x.SVIDs {
		leaf := s.Certificates[0]
		chain := make([]string, len(s.Certificates))
		for i, c := range s.Certificates {
			chain[i] = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}))
		}
		svids = append(svids, map[string]any{
			"spiffe_id": s.ID.String(), "hint": s.Hint, "serial": leaf.SerialNumber.Text(16),
			"not_before": leaf.NotBefore.UTC().Format(time.RFC3339), "not_after": leaf.NotAfter.UTC().Format(time.RFC3339),
			"dns_names": leaf.DNSNames, "chain_pem": chain,
		})
	}
	bundles := map[string]int{}
	for _, b := range x.Bundles.Bundles() {
		bundles[b.TrustDomain().Name()] = len(b.X509Authorities())
	}
	return map[string]any{"svids": svids, "bundles": bundles}
}

func printSVIDs(cmd *cobra.Command, x *workloadapi.X509Context, dir string) error {
	w := cmd.OutOrStdout()
	for i, s := range x.SVIDs {
		leaf := s.Certificates[0]
		hint := s.Hint
		if hint == "" {
			hint = "-"
		}
		rows := [][]string{
			{"SPIFFE ID:", s.ID.String()},
			{"Hint:", hint},
			{"Serial:", leaf.SerialNumber.Text(16)},
			{"Valid:", fmt.Sprintf("%s to %s (expires in %s)", leaf.NotBefore.UTC().Format(time.RFC3339),
				leaf.NotAfter.UTC().Format(time.RFC3339), time.Until(leaf.NotAfter).Round(time.Second))},
		}
		if len(leaf.DNSNames) > 0 {
			rows = append(rows, []string{"DNS names:", strings.Join(leaf.DNSNames, ",")})
		}
		for j, c := range s.Certificates {
			rows = append(rows, []string{fmt.Sprintf("Chain[%d]:", j), certSummary(c)})
		}
		if b, err := x.Bundles.GetX509BundleForTrustDomain(s.ID.TrustDomain()); err == nil {
			for j, c := range b.X509Authorities() {
				rows = append(rows, []string{fmt.Sprintf("Bundle[%d]:", j), certSummary(c)})
			}
		}
		if i > 0 {
			fmt.Fprintln(w)
		}
		if err := Table(w, rows); err != nil {
			return err
		}
	}
	if dir != "" {
		fmt.Fprintf(w, "\nwrote %d SVID(s) to %s\n", len(x.SVIDs), dir)
	}
	return nil
}

func certSummary(c *x509.Certificate) string {
	id := "-"
	if len(c.URIs) > 0 {
		id = c.URIs[0].String()
	}
	return fmt.Sprintf("%s issued by %q, expires %s", id, c.Issuer.String(), c.NotAfter.UTC().Format(time.RFC3339))
}

// writeSVIDFiles writes each SVID's chain and key and its trust bundle.
// Files are replaced atomically; keys are 0600.
func writeSVIDFiles(dir string, x *workloadapi.X509Context) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("--write: %w", err)
	}
	for i, s := range x.SVIDs {
		certs, key, err := s.Marshal()
		if err != nil {
			return fmt.Errorf("encode svid %s: %w", s.ID, err)
		}
		if err := atomicfile.WriteFile(filepath.Join(dir, fmt.Sprintf("svid.%d.pem", i)), certs, 0o644); err != nil {
			return err
		}
		if err := atomicfile.WriteFile(filepath.Join(dir, fmt.Sprintf("svid.%d.key", i)), key, 0o600); err != nil {
			return err
		}
		b, err := x.Bundles.GetX509BundleForTrustDomain(s.ID.TrustDomain())
		if err != nil {
			return fmt.Errorf("bundle for %s: %w", s.ID.TrustDomain(), err)
		}
		pemBytes, err := b.Marshal()
		if err != nil {
			return err
		}
		if err := atomicfile.WriteFile(filepath.Join(dir, fmt.Sprintf("bundle.%d.pem", i)), pemBytes, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// NewJWTCmd builds `jwt`: fetch and validate JWT-SVIDs through the Workload API.
func NewJWTCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "jwt", Short: "Fetch and validate JWT-SVIDs through the Workload API"}
	var (
		fconn, vconn WorkloadConn
		audiences    []string
		spiffeID     string
		fjson, vjson bool
		vaudience    string
	)
	fetch := &cobra.Command{
		Use:   "fetch",
		Short: "Fetch JWT-SVIDs for an audience; prints each token on its own line",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(audiences) == 0 {
				return fmt.Errorf("--audience is required, e.g. --audience https://api.example.org")
			}
			params := jwtsvid.Params{Audience: audiences[0], ExtraAudiences: audiences[1:]}
			if spiffeID != "" {
				id, err := spiffeid.FromString(spiffeID)
				if err != nil {
					return fmt.Errorf("--spiffe-id %q: %v", spiffeID, err)
				}
				params.Subject = id
			}
			ctx, c, closeFn, err := fconn.Client(cmd)
			if err != nil {
				return err
			}
			defer closeFn()
			svids, err := c.FetchJWTSVIDs(ctx, params)
			if err != nil {
				return WorkloadErr(err)
			}
			if fjson {
				items := make([]map[string]any, len(svids))
				for i, s := range svids {
					items[i] = map[string]any{"spiffe_id": s.ID.String(), "token": s.Marshal(), "audience": s.Audience,
						"expires_at": s.Expiry.UTC().Format(time.RFC3339), "hint": s.Hint}
				}
				return WriteJSON(cmd.OutOrStdout(), map[string]any{"svids": items})
			}
			for _, s := range svids {
				fmt.Fprintf(cmd.ErrOrStderr(), "%s (expires %s)\n", s.ID, s.Expiry.UTC().Format(time.RFC3339))
				fmt.Fprintln(cmd.OutOrStdout(), s.Marshal())
			}
			return nil
		},
	}
	fconn.AddFlags(fetch)
	fetch.Flags().StringArrayVar(&audiences, "audience", nil, "audience the token is for (repeatable)")
	fetch.Flags().StringVar(&spiffeID, "spiffe-id", "", "only this identity (default: every identity of the caller)")
	AddOutputFlags(fetch, &fjson, "JSON")

	validate := &cobra.Command{
		Use:   "validate --audience A TOKEN",
		Short: "Validate a JWT-SVID against the trust bundles; exits 1 when invalid",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if vaudience == "" {
				return fmt.Errorf("--audience is required: the audience this service expects")
			}
			ctx, c, closeFn, err := vconn.Client(cmd)
			if err != nil {
				return err
			}
			defer closeFn()
			svid, err := c.ValidateJWTSVID(ctx, strings.TrimSpace(args[0]), vaudience)
			if err != nil {
				if status.Code(err) == codes.InvalidArgument {
					return fmt.Errorf("token is not valid: %s", status.Convert(err).Message())
				}
				return WorkloadErr(err)
			}
			if vjson {
				return WriteJSON(cmd.OutOrStdout(), map[string]any{"valid": true, "spiffe_id": svid.ID.String(),
					"expires_at": svid.Expiry.UTC().Format(time.RFC3339), "claims": svid.Claims})
			}
			return Table(cmd.OutOrStdout(), jwtClaimRows(svid))
		},
	}
	vconn.AddFlags(validate)
	validate.Flags().StringVar(&vaudience, "audience", "", "the audience the token must carry")
	AddOutputFlags(validate, &vjson, "JSON")
	cmd.AddCommand(fetch, validate)
	return cmd
}
