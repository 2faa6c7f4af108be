package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/signet-id/signet/internal/agent"
	"github.com/signet-id/signet/internal/agentcli"
	"github.com/signet-id/signet/internal/config"
	"github.com/signet-id/signet/internal/keyfile"
	"github.com/signet-id/signet/internal/nodeattest/awsiid"
	"github.com/signet-id/signet/internal/nodeattest/azuremsi"
	"github.com/signet-id/signet/internal/nodeattest/gcpiit"
	"github.com/signet-id/signet/internal/nodeattest/jointoken"
	"github.com/signet-id/signet/internal/nodeattest/k8spsat"
	"github.com/signet-id/signet/internal/nodeattest/tpm"
	"github.com/signet-id/signet/internal/preflight"
	"github.com/signet-id/signet/internal/workloadattest/docker"
	"github.com/signet-id/signet/internal/workloadattest/k8s"
)

// agent checks an agent's setup from its configuration file (or the
// defaults).
func (d *doctor) agent(cmd *cobra.Command, configPath string) *doctorReport {
	r := &doctorReport{Role: "agent", Config: configPath}
	f := agentcli.NewAgentSettings(configPath, doctorFlags(agentcli.AgentDefaults()))
	c, err := f.Resolve()
	if err == nil {
		err = preflightAddress(f.Flags(), c)
	}
	if err != nil {
		r.problem("config", oneLine(err), configFix(configPath))
		return r
	}
	cfg, err := f.AgentConfig(c, slog.New(slog.DiscardHandler))
	if err == nil {
		err = agentcli.AgentConfigErr(cfg.Check())
	}
	configOK := err == nil
	if err != nil {
		for _, e := range splitJoined(err) {
			r.problem("config", e, configFix(configPath))
		}
	}
	td, tdErr := agent.ResolveTrustDomain(cfg)
	if configOK && tdErr != nil {
		r.problem("config", agentcli.AgentConfigErr(tdErr).Error(), "set trust_domain or trust_bundle in "+orDefaults(configPath))
	} else if configOK {
		r.ok("config", "valid (trust domain %s, server %s)", td, c.ServerAddress)
	}

	if err := preflight.DataDir(f.Flags().Name("data-dir"), c.DataDir); err != nil {
		r.problemErr("data_dir", err, "")
	} else if _, err := os.Stat(c.DataDir); err != nil {
		r.ok("data_dir", "%s does not exist yet: the agent creates it (0700) on its first start", c.DataDir)
	} else {
		r.ok("data_dir", "%s is owned by this user and writable by no one else", c.DataDir)
	}

	var p agent.Persisted
	if tdErr == nil {
		p = agent.ReadPersisted(c.DataDir, td)
		d.agentSVID(r, p, cfg.NodeAttestor != nil)
	}
	d.agentServer(cmd.Context(), r, c, cfg, td, tdErr, p)
	d.agentSocket(r, c.Socket)
	d.agentAttestor(cmd.Context(), r, c, p.SVID != nil)
	d.workloadAttestors(cmd.Context(), r, c)
	return r
}

// workloadAttestors checks what the configured workload attestors talk to:
// docker's API socket, the kubelet and the service account token of k8s.
func (d *doctor) workloadAttestors(ctx context.Context, r *doctorReport, c config.Agent) {
	for _, name := range c.WorkloadAttestors.Names() {
		n := c.WorkloadAttestors[name]
		var s map[string]any
		_ = n.Decode(&s) // agentConfig reported a malformed section
		get := func(key, def string) string {
			if v, ok := s[key].(string); ok && v != "" {
				return v
			}
			return def
		}
		switch name {
		case "docker":
			sock := get("socket", docker.DefaultSocket)
			conn, err := (&net.Dialer{Timeout: d.timeout}).DialContext(ctx, "unix", sock)
			if err != nil {
				r.problem("attestor", fmt.Sprintf("docker: cannot connect to the Docker API socket %s: %v", sock, errors.Unwrap(err)),
					"start dockerd, run the agent in the docker group, or set workload_attestors.docker.socket")
				continue
			}
			conn.Close()
			r.ok("attestor", "docker: the Docker API socket %s answers", sock)
		case "k8s":
			tok := get("token_path", k8s.DefaultTokenPath)
			if _, err := keyfile.Read(tok); err != nil {
				r.problem("attestor", fmt.Sprintf("k8s: cannot read the service account token %s: %v", tok, err),
					"run the agent in a pod with a service account token, or set workload_attestors.k8s.token_path")
				continue
			}
			u, err := url.Parse(get("kubelet_url", k8s.DefaultKubeletURL))
			if err == nil {
				var conn net.Conn
				if conn, err = (&net.Dialer{Timeout: d.timeout}).DialContext(ctx, "tcp", u.Host); err == nil {
					conn.Close()
					r.ok("attestor", "k8s: token readable, the kubelet at %s accepts connections", u.Host)
					continue
				}
			}
			r.problem("attestor", fmt.Sprintf("k8s: cannot reach the kubelet: %v", err),
				"run the agent with hostNetwork on the node, or set workload_attestors.k8s.kubelet_url")
		}
	}
}

// preflightAddress is the server address part of `agent run`'s preflight.
func preflightAddress(flags *config.Flags[config.Agent], c config.Agent) error {
	if _, err := agent.ParseServerAddresses(c.ServerAddress); err != nil {
		return fmt.Errorf("%s: %w", flags.Name("server-address"), err)
	}
	return nil
}

// agentSVID checks the persisted agent SVID: present, parseable, valid now.
func (d *doctor) agentSVID(r *doctorReport, p agent.Persisted, haveAttestor bool) {
	switch {
	case p.SVIDErr != nil:
		r.problem("svid", oneLine(p.SVIDErr),
			fmt.Sprintf("remove %s and its key so the agent attests again (it needs a node attestor or a join token)", p.SVIDPath))
	case p.SVID == nil && !haveAttestor:
		r.problem("svid", "no persisted agent SVID and no node attestor: the agent cannot attest",
			"create a join token on the server (signet token create) and give it with --join-token-file, or configure node_attestor")
	case p.SVID == nil:
		r.ok("svid", "no agent SVID yet: the agent attests on its first start")
	default:
		leaf := p.SVID.Certificates[0]
		now := d.now()
		switch {
		case now.After(leaf.NotAfter):
			r.problem("svid", fmt.Sprintf("the agent SVID %s expired at %s", p.SVID.ID, leaf.NotAfter.UTC().Format(time.RFC3339)),
				fmt.Sprintf("start the agent: it comes back by proof of possession within the server's agent_reauth_window; past it, create a join token (signet token create --spiffe-id %s) and start the agent with it", p.SVID.ID))
		case now.Before(leaf.NotBefore.Add(-clockSkew)):
			r.problem("svid", fmt.Sprintf("the agent SVID %s is valid only from %s: the clock is behind", p.SVID.ID, leaf.NotBefore.UTC().Format(time.RFC3339)),
				"fix the system clock (timedatectl set-ntp true)")
		default:
			r.ok("svid", "agent SVID %s is valid", p.SVID.ID)
		}
	}
}

// agentServer connects to the server's agent API and verifies its
// certificate the way the agent does, naming the exact TLS failure.
func (d *doctor) agentServer(ctx context.Context, r *doctorReport, c config.Agent, cfg agent.Config, td spiffeid.TrustDomain, tdErr error, p agent.Persisted) {
	if tdErr != nil {
		r.problem("server", "no trust domain, so the server cannot be authenticated", "set trust_domain or trust_bundle")
		return
	}
	roots, source := cfg.TrustBundle, "trust_bundle "+c.TrustBundle
	if p.Bundle != nil {
		roots, source = p.Bundle.X509Authorities(), "the persisted bundle "+filepath.Join(c.DataDir, "bundle.json")
	} else if p.BundleErr != nil {
		r.problem("server", oneLine(p.BundleErr), fmt.Sprintf("remove %s; the agent then trusts trust_bundle again", filepath.Join(c.DataDir, "bundle.json")))
	}
	if len(roots) == 0 {
		r.problem("server", "no trust bundle to authenticate the server with",
			"on the server run: signet bundle show > bundle.pem; then set trust_bundle to that file")
		return
	}
	bundle := x509bundle.FromX509Authorities(td, roots)
	want := agent.ServerID(td)
	servers, err := agent.ParseServerAddresses(c.ServerAddress)
	if err != nil {
		r.problem("server", oneLine(err), "fix server_address: host:port, or a comma-separated list of them")
		return
	}
	// Each listed replica must answer: the agent fails over to any of them.
	for _, addr := range servers {
		d.agentServerAt(ctx, r, addr, bundle, want, source)
	}
}

// agentServerAt checks one server of the list.
func (d *doctor) agentServerAt(ctx context.Context, r *doctorReport, addr string, bundle *x509bundle.Bundle, want spiffeid.ID, source string) {
	var verr error
	tcfg := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		InsecureSkipVerify: true, //nolint:gosec // verified in VerifyPeerCertificate, as the agent does
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			id, _, err := x509svid.ParseAndVerify(raw, bundle, x509svid.WithTime(d.now()))
			if err == nil && id != want {
				err = fmt.Errorf("the server presented %s, want %s", id, want)
			}
			verr = err
			return err
		},
		NextProtos: []string{"h2"},
	}
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	conn, err := (&tls.Dialer{Config: tcfg}).DialContext(ctx, "tcp", addr)
	if err == nil {
		conn.Close()
		r.ok("server", "%s is reachable and presents %s, trusted by %s", addr, want, source)
		return
	}
	if verr == nil {
		var ne net.Error
		detail := fmt.Sprintf("cannot reach the server at %s: %v", addr, err)
		if errors.As(err, &ne) && ne.Timeout() {
			detail = fmt.Sprintf("cannot reach the server at %s: no answer in %s", addr, d.timeout)
		}
		r.problem("server", detail, "check that the server runs and that server_address and the firewall let this node reach it")
		return
	}
	detail, fix := tlsProblem(verr, want, source)
	r.problem("server", fmt.Sprintf("%s: %s", addr, detail), fix)
}

// tlsProblem names a failed verification of the server's certificate and
// its fix.
func tlsProblem(err error, want spiffeid.ID, source string) (detail, fix string) {
	var unknown x509.UnknownAuthorityError
	var invalid x509.CertificateInvalidError
	msg := err.Error()
	switch {
	case errors.As(err, &unknown) || strings.Contains(msg, "unknown authority"):
		return "server certificate signed by unknown authority (not by " + source + ")",
			"on the server run: signet bundle show > bundle.pem; set trust_bundle to it (and remove a stale bundle.json from the data dir)"
	case errors.As(err, &invalid) && invalid.Reason == x509.Expired || strings.Contains(msg, "expired") || strings.Contains(msg, "not yet valid"):
		return "server certificate expired or not yet valid (" + oneLine(err) + ")",
			"compare the clocks of this node and the server (date -u); a running server renews its own certificate"
	case strings.Contains(msg, "the server presented"):
		return "wrong SPIFFE ID: " + msg,
			fmt.Sprintf("server_address reaches another server or trust domain: point it at the server of %s or fix trust_domain", want.TrustDomain())
	}
	return "server certificate not trusted: " + oneLine(err), "on the server run: signet bundle show > bundle.pem; set trust_bundle to it"
}

// agentSocket checks the Workload API socket: a path the kernel accepts, in
// a directory that exists or can be made, and, when present, served and
// open to workloads of every user.
func (d *doctor) agentSocket(r *doctorReport, path string) {
	err := preflight.SocketPath("socket", path)
	served := errors.Is(err, preflight.ErrInUse)
	if err != nil && !served {
		r.problemErr("socket", err, "")
		return
	}
	if fi, err := os.Stat(filepath.Dir(path)); err == nil && fi.IsDir() && fi.Mode().Perm()&0o005 != 0o005 {
		r.problem("socket", fmt.Sprintf("the socket's directory %s has mode %04o: workloads of other users cannot reach the socket", filepath.Dir(path), fi.Mode().Perm()),
			"chmod 755 "+filepath.Dir(path))
		return
	}
	fi, err := os.Lstat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		r.ok("socket", "%s is free: the agent creates it on start", path)
	case err != nil:
		r.problemErr("socket", err, "")
	case fi.Mode().Perm()&0o777 != 0o777:
		r.problem("socket", fmt.Sprintf("%s has mode %04o: workloads of other users cannot connect", path, fi.Mode().Perm()),
			"chmod 777 "+path+" (the agent sets it on start; workload attestation decides what each caller gets)")
	case served:
		r.ok("socket", "%s is served (the agent is running) and open to workloads", path)
	default:
		r.ok("socket", "%s is a stale socket: the agent replaces it on start", path)
	}
}

// agentAttestor checks the prerequisites of the configured node attestor:
// the TPM device, the cloud's metadata service, the token files.
func (d *doctor) agentAttestor(ctx context.Context, r *doctorReport, c config.Agent, haveSVID bool) {
	names := c.NodeAttestor.Names()
	if len(names) != 1 {
		if c.JoinTokenFile != "" && !haveSVID {
			if _, err := jointoken.ReadTokenFile(c.JoinTokenFile); err != nil {
				r.problem("attestor", "join_token_file: "+oneLine(err), "write the token from: signet token create")
				return
			}
			r.ok("attestor", "join_token: token file %s is readable", c.JoinTokenFile)
		}
		return
	}
	name := names[0]
	n := c.NodeAttestor[name]
	var s map[string]any
	_ = n.Decode(&s) // agentConfig reported a malformed section
	get := func(key, def string) string {
		if v, ok := s[key].(string); ok && v != "" {
			return v
		}
		return def
	}
	switch name {
	case "tpm":
		dev := get("device", tpm.DefaultDevice)
		f, err := os.OpenFile(dev, os.O_RDWR, 0)
		if err != nil {
			r.problem("attestor", fmt.Sprintf("tpm: cannot open the TPM %s: %v", dev, errors.Unwrap(err)),
				"load the TPM driver (ls /dev/tpm*), run the agent as a user in the tss group, or set node_attestor.tpm.device")
			return
		}
		f.Close()
		r.ok("attestor", "tpm: %s opens", dev)
	case "aws_iid", "gcp_iit", "azure_msi":
		def := map[string]string{"aws_iid": awsiid.DefaultMetadataURL, "gcp_iit": gcpiit.DefaultMetadataURL, "azure_msi": azuremsi.DefaultMetadataURL}[name]
		u := get("metadata_url", def)
		ctx, cancel := context.WithTimeout(ctx, d.timeout)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err == nil {
			var resp *http.Response
			if resp, err = http.DefaultClient.Do(req); err == nil {
				resp.Body.Close()
				r.ok("attestor", "%s: the metadata service %s answers", name, u)
				return
			}
		}
		r.problem("attestor", fmt.Sprintf("%s: the metadata service %s does not answer: %v", name, u, errors.Unwrap(err)),
			"run the agent on an instance of that cloud (with its metadata service enabled), or choose another node_attestor")
	case "k8s_psat":
		path := get("token_path", k8spsat.DefaultTokenPath)
		if _, err := keyfile.Read(path); err != nil {
			r.problem("attestor", fmt.Sprintf("k8s_psat: cannot read the service account token %s: %v", path, err),
				"mount a projected service account token there (audience: the server's), or set node_attestor.k8s_psat.token_path")
			return
		}
		r.ok("attestor", "k8s_psat: token %s is readable", path)
	case "x509pop", "sshpop":
		keys := map[string][2]string{"x509pop": {"certificate_path", "private_key_path"}, "sshpop": {"host_cert_path", "host_key_path"}}[name]
		cert, key := get(keys[0], ""), get(keys[1], "")
		if _, err := keyfile.Read(cert); err != nil {
			r.problem("attestor", fmt.Sprintf("%s: %s: %v", name, keys[0], err), "give the node's certificate")
			return
		}
		if _, err := keyfile.ReadPrivate(key); err != nil {
			r.problemErr("attestor", fmt.Errorf("%s: %s: %w", name, keys[1], err), "")
			return
		}
		r.ok("attestor", "%s: certificate and key are readable, the key by this user only", name)
	case "join_token":
		if tf := get("token_file", ""); tf != "" && !haveSVID {
			if _, err := jointoken.ReadTokenFile(tf); err != nil {
				r.problem("attestor", "join_token: token_file: "+oneLine(err), "write the token from: signet token create")
				return
			}
		}
		r.ok("attestor", "join_token: nothing else needed")
	}
}
