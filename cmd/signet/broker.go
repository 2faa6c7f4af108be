package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/url"
	"os"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spiffe/go-spiffe/v2/workloadapi"

	"github.com/signet-id/signet/internal/atomicfile"
	"github.com/signet-id/signet/internal/brokerclient"
	"github.com/signet-id/signet/internal/config"
	brokerv1 "github.com/signet-id/signet/internal/gen/signet/broker/v1"
)

// brokerCall runs fn with a Broker admin client on the admin socket.
func (a *adminConn) brokerCall(cmd *cobra.Command, fn func(ctx context.Context, c brokerv1.BrokerClient) error) error {
	conn, err := a.dial()
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(cmd.Context(), adminCallTimeout)
	defer cancel()
	return rpcErr(fn(ctx, brokerv1.NewBrokerClient(conn)))
}

// maxSecretFile bounds --from-file.
const maxSecretFile = 64 << 10

func readSecretFile(path string) ([]byte, error) {
	if path == "" {
		return nil, errors.New("--from-file is required: the file holding the secret's value (- for stdin)")
	}
	var r io.Reader = os.Stdin
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("--from-file: %w", err)
		}
		defer f.Close()
		r = f
	}
	b, err := io.ReadAll(io.LimitReader(r, maxSecretFile+1))
	if err != nil {
		return nil, fmt.Errorf("--from-file: %w", err)
	}
	if len(b) > maxSecretFile {
		return nil, fmt.Errorf("--from-file: more than %d bytes", maxSecretFile)
	}
	// A trailing newline is an editor's, not the secret's.
	b = []byte(strings.TrimRight(string(b), "\r\n"))
	if len(b) == 0 {
		return nil, errors.New("--from-file: the file is empty")
	}
	return b, nil
}

func newSecretCmd() *cobra.Command {
	var conn adminConn
	cmd := &cobra.Command{Use: "secret", Short: "Static secrets the broker keeps sealed (provider: static)"}
	conn.addFlags(cmd)
	put := func(rotate bool) *cobra.Command {
		var from string
		use, short := "put NAME --from-file FILE", "Seal and store a secret; prints nothing secret"
		if rotate {
			use, short = "rotate NAME --from-file FILE", "Store a new version of a secret; lists the open leases of older versions as stale"
		}
		c := &cobra.Command{
			Use: use, Short: short, Args: cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				v, err := readSecretFile(from)
				if err != nil {
					return err
				}
				req := &brokerv1.PutSecretRequest{Name: args[0], Value: v}
				w := cmd.OutOrStdout()
				if !rotate {
					var s *brokerv1.Secret
					if err := conn.brokerCall(cmd, func(ctx context.Context, c brokerv1.BrokerClient) (err error) {
						s, err = c.PutSecret(ctx, req)
						return err
					}); err != nil {
						return err
					}
					_, err = fmt.Fprintf(w, "stored secret %s version %d (sealed under key %s)\n", s.GetName(), s.GetVersion(), s.GetKeyId())
					return err
				}
				var resp *brokerv1.RotateSecretResponse
				if err := conn.brokerCall(cmd, func(ctx context.Context, c brokerv1.BrokerClient) (err error) {
					resp, err = c.RotateSecret(ctx, req)
					return err
				}); err != nil {
					return err
				}
				s := resp.GetSecret()
				fmt.Fprintf(w, "stored secret %s version %d (sealed under key %s)\n", s.GetName(), s.GetVersion(), s.GetKeyId())
				if len(resp.GetStale()) > 0 {
					fmt.Fprintf(w, "%d open lease(s) hold an older version (stale):\n", len(resp.GetStale()))
					return leaseTable(w, resp.GetStale())
				}
				return nil
			},
		}
		c.Flags().StringVar(&from, "from-file", "", "file holding the value (- reads stdin); a trailing newline is dropped")
		return c
	}
	var out output
	var page pageFlags
	list := &cobra.Command{
		Use: "list", Short: "List secrets by name, a page at a time: name, version, age — never the value", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			size, err := page.size()
			if err != nil {
				return err
			}
			var resp *brokerv1.ListSecretsResponse
			if err := conn.brokerCall(cmd, func(ctx context.Context, c brokerv1.BrokerClient) (err error) {
				resp, err = c.ListSecrets(ctx, &brokerv1.ListSecretsRequest{PageSize: size, PageToken: page.token})
				return err
			}); err != nil {
				return err
			}
			type secretJSON struct {
				Name      string `json:"name"`
				Version   int64  `json:"version"`
				KeyID     string `json:"key_id"`
				CreatedAt string `json:"created_at"`
			}
			js := []secretJSON{}
			rows := [][]string{{"NAME", "VERSION", "AGE", "KEY ID"}}
			for _, s := range resp.GetSecrets() {
				js = append(js, secretJSON{s.GetName(), s.GetVersion(), s.GetKeyId(), rfc3339(s.GetCreatedAt())})
				rows = append(rows, []string{s.GetName(), fmt.Sprint(s.GetVersion()), age(unixTime(s.GetCreatedAt())), s.GetKeyId()})
			}
			if out.json {
				return writeJSON(cmd.OutOrStdout(), map[string]any{"secrets": js, "next_page_token": resp.GetNextPageToken()})
			}
			if err := table(cmd.OutOrStdout(), rows); err != nil {
				return err
			}
			return nextPage(cmd, resp.GetNextPageToken())
		},
	}
	page.addFlags(list, "secrets")
	out.addFlags(list)
	cmd.AddCommand(put(false), put(true), list)
	return cmd
}

func age(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return config.FormatDuration(time.Since(t).Truncate(time.Second))
}

type leaseJSON struct {
	ID            string         `json:"id"`
	Credential    string         `json:"credential"`
	Provider      string         `json:"provider"`
	SPIFFEID      string         `json:"spiffe_id"`
	NodeID        string         `json:"node_id,omitempty"`
	Context       map[string]any `json:"context,omitempty"`
	SecretVersion int64          `json:"secret_version,omitempty"`
	State         string         `json:"state"`
	IssuedAt      string         `json:"issued_at"`
	ExpiresAt     string         `json:"expires_at"`
	Reason        string         `json:"reason,omitempty"`
}

func leaseToJSON(l *brokerv1.Lease) leaseJSON {
	j := leaseJSON{ID: l.GetId(), Credential: l.GetCredential(), Provider: l.GetProvider(), SPIFFEID: l.GetSpiffeId(), NodeID: l.GetNodeId(),
		SecretVersion: l.GetSecretVersion(), State: l.GetState(), IssuedAt: rfc3339(l.GetIssuedAt()), ExpiresAt: rfc3339(l.GetExpiresAt()), Reason: l.GetReason()}
	_ = json.Unmarshal([]byte(l.GetContextJson()), &j.Context)
	if len(j.Context) == 0 {
		j.Context = nil
	}
	return j
}

func leaseTable(w io.Writer, ls []*brokerv1.Lease) error {
	rows := [][]string{{"LEASE ID", "CREDENTIAL", "SPIFFE ID", "STATE", "ISSUED", "EXPIRES"}}
	for _, l := range ls {
		rows = append(rows, []string{l.GetId(), l.GetCredential(), l.GetSpiffeId(), l.GetState(),
			fmtTime(unixTime(l.GetIssuedAt())), fmtTime(unixTime(l.GetExpiresAt()))})
	}
	return table(w, rows)
}

func newLeaseCmd() *cobra.Command {
	var conn adminConn
	cmd := &cobra.Command{Use: "lease", Short: "Brokered credentials: list, revoke and renew their leases"}
	conn.addFlags(cmd)

	var lf struct {
		credential, spiffeID string
		states               []string
		out                  output
		page                 pageFlags
	}
	list := &cobra.Command{
		Use: "list [--credential NAME] [--spiffe-id ID]", Short: "List leases, newest first, a page at a time", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			size, err := lf.page.size()
			if err != nil {
				return err
			}
			var resp *brokerv1.ListLeasesResponse
			if err := conn.brokerCall(cmd, func(ctx context.Context, c brokerv1.BrokerClient) (err error) {
				resp, err = c.ListLeases(ctx, &brokerv1.ListLeasesRequest{Credential: lf.credential, SpiffeId: lf.spiffeID, States: lf.states,
					Limit: size, PageToken: lf.page.token})
				return err
			}); err != nil {
				return err
			}
			if lf.out.json {
				js := []leaseJSON{}
				for _, l := range resp.GetLeases() {
					js = append(js, leaseToJSON(l))
				}
				return writeJSON(cmd.OutOrStdout(), map[string]any{"leases": js, "next_page_token": resp.GetNextPageToken()})
			}
			if err := leaseTable(cmd.OutOrStdout(), resp.GetLeases()); err != nil {
				return err
			}
			return nextPage(cmd, resp.GetNextPageToken())
		},
	}
	lf.page.addFlags(list, "leases")
	list.Flags().StringVar(&lf.credential, "credential", "", "only leases of this credential")
	list.Flags().StringVar(&lf.spiffeID, "spiffe-id", "", "only leases of this workload")
	list.Flags().StringSliceVar(&lf.states, "state", nil, "only leases in these states: pending, active, revoked, expired")
	lf.out.addFlags(list)

	var rf struct{ spiffeID, credential, reason string }
	revoke := &cobra.Command{
		Use:   "revoke LEASE_ID | --spiffe-id ID | --credential NAME",
		Short: "Revoke leases at the provider at once (a PostgreSQL role is dropped and its sessions ended)",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := &brokerv1.RevokeLeasesRequest{SpiffeId: rf.spiffeID, Credential: rf.credential, Reason: rf.reason}
			if len(args) == 1 {
				req.LeaseId = args[0]
			}
			n := 0
			for _, s := range []string{req.LeaseId, req.SpiffeId, req.Credential} {
				if s != "" {
					n++
				}
			}
			if n != 1 {
				return errors.New("name exactly one of: a LEASE_ID argument, --spiffe-id or --credential")
			}
			var resp *brokerv1.RevokeLeasesResponse
			if err := conn.brokerCall(cmd, func(ctx context.Context, c brokerv1.BrokerClient) (err error) {
				resp, err = c.RevokeLeases(ctx, req)
				return err
			}); err != nil {
				return err
			}
			for _, l := range resp.GetRevoked() {
				fmt.Fprintf(cmd.OutOrStdout(), "%s %s (%s, %s)\n", l.GetState(), l.GetId(), l.GetCredential(), l.GetSpiffeId())
			}
			if len(resp.GetRevoked()) == 0 {
				fmt.Fprintln(cmd.OutOrStdout(), "no open leases matched")
			}
			return nil
		},
	}
	revoke.Flags().StringVar(&rf.spiffeID, "spiffe-id", "", "revoke every open lease of this workload")
	revoke.Flags().StringVar(&rf.credential, "credential", "", "revoke every open lease of this credential")
	revoke.Flags().StringVar(&rf.reason, "reason", "", "why, for the audit log")

	var ttl time.Duration
	renew := &cobra.Command{
		Use: "renew LEASE_ID [--ttl 15m]", Short: "Extend an active lease (never past its credential's max_ttl from issue)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var l *brokerv1.Lease
			if err := conn.brokerCall(cmd, func(ctx context.Context, c brokerv1.BrokerClient) (err error) {
				l, err = c.RenewLease(ctx, &brokerv1.RenewLeaseRequest{LeaseId: args[0], TtlSeconds: int64(ttl / time.Second)})
				return err
			}); err != nil {
				return err
			}
			_, err := fmt.Fprintf(cmd.OutOrStdout(), "renewed %s until %s\n", l.GetId(), rfc3339(l.GetExpiresAt()))
			return err
		},
	}
	renew.Flags().Var(config.DurationFlag(&ttl), "ttl", "new lifetime from now (default: the credential's default_ttl)")
	cmd.AddCommand(list, revoke, renew)
	return cmd
}

// brokerURLEnv names the broker's base URL.
const brokerURLEnv = brokerclient.EnvURL

// credentialResult is what `credential get --json` prints.
type credentialResult = brokerclient.Result

func newCredentialCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "credential", Short: "Brokered credentials for the calling workload"}
	var f struct {
		wl       workloadConn
		broker   string
		contexts []string
		ttl      time.Duration
		out      output
		format   string
		write    string
		pubKey   string
	}
	get := &cobra.Command{
		Use:   "get NAME [--context k=v] [--ttl 5m] [--json | --format env | --write FILE]",
		Short: "Trade this workload's SVID for a short-lived credential at the broker (POST /oauth2/token)",
		Example: "  signet credential get orders-db --context ticket=CHG-1 --ttl 5m --json\n" +
			"  eval \"$(signet credential get orders-db --context ticket=CHG-1 --format env)\"",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if f.format != "" && f.format != "env" {
				return fmt.Errorf("--format %q: use env (or --json)", f.format)
			}
			if f.out.json && (f.format != "" || f.write != "") || f.format != "" && f.write != "" {
				return errors.New("use one of --json, --format env and --write")
			}
			u, err := f.wl.brokerURL(cmd, f.broker)
			if err != nil {
				return err
			}
			kvs, err := contextMap(f.contexts)
			if err != nil {
				return err
			}
			// An SSH certificate is issued for a key made here: --write
			// generates one (credentials that certify no key ignore it).
			var pub string
			var kp *sshKeyPair
			switch {
			case f.pubKey != "":
				b, err := os.ReadFile(f.pubKey)
				if err != nil {
					return fmt.Errorf("--public-key: %w", err)
				}
				pub = string(b)
			case f.write != "":
				if kp, err = newSSHKeyPair(); err != nil {
					return err
				}
				pub = kp.pub
			}
			res, err := requestCredential(cmd, &f.wl, u, brokerclient.Request{Credential: args[0], Context: kvs, TTL: f.ttl, PublicKey: pub})
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			switch {
			case f.out.json:
				return writeJSON(w, res)
			case f.format == "env":
				return writeEnv(w, res)
			case f.write != "" && kp != nil && res.Data["certificate"] != "":
				if err := kp.writeSSH(f.write, res.Data["certificate"], "signet lease "+res.LeaseID); err != nil {
					return err
				}
				_, err := fmt.Fprintf(w, "wrote key %s and certificate %s-cert.pub of lease %s (%s, expires %s)\n",
					f.write, f.write, res.LeaseID, res.Credential, res.ExpiresAt)
				return err
			case f.write != "":
				b, _ := json.MarshalIndent(res, "", "  ")
				if err := atomicfile.WriteFile(f.write, append(b, '\n'), 0o600); err != nil {
					return fmt.Errorf("--write: %w", err)
				}
				_, err := fmt.Fprintf(w, "wrote lease %s of %s to %s (expires %s)\n", res.LeaseID, res.Credential, f.write, res.ExpiresAt)
				return err
			}
			for _, k := range slices.Sorted(maps.Keys(res.Data)) {
				fmt.Fprintf(w, "%s: %s\n", k, res.Data[k])
			}
			_, err = fmt.Fprintf(w, "lease %s expires %s\n", res.LeaseID, res.ExpiresAt)
			return err
		},
	}
	f.wl.addFlags(get)
	get.Flags().StringVar(&f.broker, "broker", "", "the broker's base URL, https://HOST:PORT (default: $"+brokerURLEnv+", else the URL the agent learned from its server)")
	get.Flags().StringArrayVar(&f.contexts, "context", nil, "task context as key=value (repeatable), sent as request_context")
	get.Flags().Var(config.DurationFlag(&f.ttl), "ttl", "lifetime to ask for (default: the credential's default_ttl)")
	f.out.addFlagsFor(get, `{"lease_id", "credential", "expires_at", "data"}`)
	get.Flags().StringVar(&f.format, "format", "", "env: print shell assignments SIGNET_LEASE_ID=… and one per data key (e.g. PGUSER, PGPASSWORD)")
	get.Flags().StringVar(&f.write, "write", "", "write the JSON result to FILE (0600) instead of printing it; for ssh credentials, a key generated here to FILE (0600) and its certificate to FILE-cert.pub")
	get.Flags().StringVar(&f.pubKey, "public-key", "", "for ssh credentials: certify this public key (authorized_keys format) instead of generating one")
	cmd.AddCommand(get)
	return cmd
}

// contextMap turns --context k=v flags into the task context.
func contextMap(kvs []string) (map[string]string, error) {
	if len(kvs) == 0 {
		return nil, nil
	}
	m := map[string]string{}
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("--context %q: want key=value", kv)
		}
		if _, dup := m[k]; dup {
			return nil, fmt.Errorf("--context %s is given twice", k)
		}
		m[k] = v
	}
	return m, nil
}

// requestCredential presents the workload's X509-SVID to the token
// endpoint over mTLS, trusting the server through the workload's bundle. A
// refusal exits 1 with the OAuth error and its description.
func requestCredential(cmd *cobra.Command, wl *workloadConn, base *url.URL, r brokerclient.Request) (*credentialResult, error) {
	res, err := fetchCredential(cmd.Context(), cmd, wl, base, r)
	if brokerclient.IsDenied(err) {
		return nil, &exitError{code: 1, err: err}
	}
	return res, err
}

// fetchCredential is requestCredential bounded by ctx, with the broker's
// refusal left a *brokerclient.DeniedError: each call takes the workload's
// current SVID from the agent, so `signet exec` renews through it too.
func fetchCredential(ctx context.Context, cmd *cobra.Command, wl *workloadConn, base *url.URL, r brokerclient.Request) (*credentialResult, error) {
	wctx, client, closeFn, err := wl.client(cmd)
	if err != nil {
		return nil, err
	}
	defer closeFn()
	src, err := workloadapi.NewX509Source(wctx, workloadapi.WithClient(client))
	if err != nil {
		return nil, workloadErr(err)
	}
	defer src.Close()
	bc, err := brokerclient.New(base, src)
	if err != nil {
		return nil, err
	}
	defer bc.Close()
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return bc.Get(rctx, r)
}

// writeEnv prints shell assignments: SIGNET_LEASE_ID, SIGNET_EXPIRES_AT and
// each data key upper-cased under SIGNET_ (postgres data also as PGUSER,
// PGPASSWORD and PGDATABASE; aws_sts data also under the names the AWS SDKs
// and CLI read: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN).
func writeEnv(w io.Writer, res *credentialResult) error {
	vars := map[string]string{"SIGNET_LEASE_ID": res.LeaseID, "SIGNET_CREDENTIAL": res.Credential, "SIGNET_EXPIRES_AT": res.ExpiresAt}
	for k, v := range res.Data {
		vars["SIGNET_"+strings.ToUpper(envName(k))] = v
	}
	if u, ok := res.Data["username"]; ok {
		vars["PGUSER"], vars["PGPASSWORD"] = u, res.Data["password"]
		if db := res.Data["database"]; db != "" {
			vars["PGDATABASE"] = db
		}
	}
	for _, k := range []string{"aws_access_key_id", "aws_secret_access_key", "aws_session_token"} {
		if v, ok := res.Data[k]; ok {
			vars[strings.ToUpper(k)] = v
		}
	}
	keys := make([]string, 0, len(vars))
	for k := range vars {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if _, err := fmt.Fprintf(w, "export %s=%s\n", k, shellQuote(vars[k])); err != nil {
			return err
		}
	}
	return nil
}

func envName(k string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			return r
		}
		return '_'
	}, k)
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }
