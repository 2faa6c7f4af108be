// Package agentside is the node-side half of internal/builtin: the agent
// halves of node attestation and the workload attestors. It is what the
// agent links, in the one signet binary and in the slim signet-agent, and
// imports nothing of the server (internal/deptest checks it); builtin
// re-exports it so that every plugin is still listed from one place.
package agentside

import (
	"fmt"
	"log/slog"
	"runtime"

	"github.com/signet-id/signet/internal/nodeattest"
	"github.com/signet-id/signet/internal/nodeattest/awsiid"
	"github.com/signet-id/signet/internal/nodeattest/azuremsi"
	"github.com/signet-id/signet/internal/nodeattest/gcpiit"
	"github.com/signet-id/signet/internal/nodeattest/jointoken"
	"github.com/signet-id/signet/internal/nodeattest/k8spsat"
	"github.com/signet-id/signet/internal/nodeattest/sshpop"
	"github.com/signet-id/signet/internal/nodeattest/tpm"
	"github.com/signet-id/signet/internal/nodeattest/x509pop"
	"github.com/signet-id/signet/internal/plugin"
	"github.com/signet-id/signet/internal/workloadattest"
	"github.com/signet-id/signet/internal/workloadattest/docker"
	"github.com/signet-id/signet/internal/workloadattest/k8s"
	"github.com/signet-id/signet/internal/workloadattest/systemd"
	"github.com/signet-id/signet/internal/workloadattest/unix"
)

// Configuration keys of the agent's plugin sections.
const (
	Key         = "node_attestor"      // the one node attestation method the agent uses
	WorkloadKey = "workload_attestors" // besides unix, always on
)

// AttestorDeps is what agent halves of node attestation may use.
type AttestorDeps struct {
	Log *slog.Logger
}

// NodeAttestors returns the registry of agent halves of node attestation.
func NodeAttestors() (*plugin.Registry[nodeattest.Attestor, AttestorDeps], error) {
	return plugin.New("node attestor", Key,
		plugin.Factory[nodeattest.Attestor, AttestorDeps]{Name: jointoken.Name, New: newJoinTokenAttestor},
		plugin.Factory[nodeattest.Attestor, AttestorDeps]{Name: x509pop.Name, New: newX509popAttestor},
		plugin.Factory[nodeattest.Attestor, AttestorDeps]{Name: sshpop.Name, New: newSSHPopAttestor},
		plugin.Factory[nodeattest.Attestor, AttestorDeps]{Name: awsiid.Name, New: newAWSIIDAttestor},
		plugin.Factory[nodeattest.Attestor, AttestorDeps]{Name: gcpiit.Name, New: newGCPIITAttestor},
		plugin.Factory[nodeattest.Attestor, AttestorDeps]{Name: azuremsi.Name, New: newAzureMSIAttestor},
		plugin.Factory[nodeattest.Attestor, AttestorDeps]{Name: tpm.Name, New: newTPMAttestor},
		plugin.Factory[nodeattest.Attestor, AttestorDeps]{Name: k8spsat.Name, New: newK8sPSATAttestor},
	)
}

// WorkloadDeps is what workload attestors may use.
type WorkloadDeps struct {
	Log *slog.Logger
}

// WorkloadAttestors returns the registry of workload attestors.
func WorkloadAttestors() (*plugin.Registry[workloadattest.Attestor, WorkloadDeps], error) {
	return plugin.New("workload attestor", WorkloadKey,
		plugin.Factory[workloadattest.Attestor, WorkloadDeps]{Name: "unix", New: newUnixAttestor},
		plugin.Factory[workloadattest.Attestor, WorkloadDeps]{Name: k8s.Name, New: newK8sAttestor},
		plugin.Factory[workloadattest.Attestor, WorkloadDeps]{Name: docker.Name, New: newDockerAttestor},
		plugin.Factory[workloadattest.Attestor, WorkloadDeps]{Name: systemd.Name, New: newSystemdAttestor},
	)
}

func newJoinTokenAttestor(_ AttestorDeps, decode plugin.Decoder) (nodeattest.Attestor, error) {
	var cfg jointoken.AgentConfig
	if err := decode(&cfg); err != nil {
		return nil, err
	}
	tok := cfg.Token
	if cfg.TokenFile != "" {
		var err error
		if tok, err = jointoken.ReadTokenFile(cfg.TokenFile); err != nil {
			return nil, fmt.Errorf("token_file: %w", err)
		}
	}
	return jointoken.New(tok)
}

func newX509popAttestor(_ AttestorDeps, decode plugin.Decoder) (nodeattest.Attestor, error) {
	var cfg x509pop.AgentConfig
	if err := decode(&cfg); err != nil {
		return nil, err
	}
	return x509pop.NewAttestor(cfg)
}

func newSSHPopAttestor(_ AttestorDeps, decode plugin.Decoder) (nodeattest.Attestor, error) {
	var cfg sshpop.AgentConfig
	if err := decode(&cfg); err != nil {
		return nil, err
	}
	return sshpop.NewAttestor(cfg)
}

func newAWSIIDAttestor(_ AttestorDeps, decode plugin.Decoder) (nodeattest.Attestor, error) {
	var cfg awsiid.AgentConfig
	if err := decode(&cfg); err != nil {
		return nil, err
	}
	return awsiid.New(cfg)
}

func newGCPIITAttestor(_ AttestorDeps, decode plugin.Decoder) (nodeattest.Attestor, error) {
	var cfg gcpiit.AgentConfig
	if err := decode(&cfg); err != nil {
		return nil, err
	}
	return gcpiit.New(cfg)
}

func newAzureMSIAttestor(_ AttestorDeps, decode plugin.Decoder) (nodeattest.Attestor, error) {
	var cfg azuremsi.AgentConfig
	if err := decode(&cfg); err != nil {
		return nil, err
	}
	return azuremsi.New(cfg)
}

func newTPMAttestor(d AttestorDeps, decode plugin.Decoder) (nodeattest.Attestor, error) {
	var cfg tpm.AgentConfig
	if err := decode(&cfg); err != nil {
		return nil, err
	}
	return tpm.New(cfg, d.Log)
}

func newK8sPSATAttestor(_ AttestorDeps, decode plugin.Decoder) (nodeattest.Attestor, error) {
	var cfg k8spsat.AgentConfig
	if err := decode(&cfg); err != nil {
		return nil, err
	}
	return k8spsat.New(cfg)
}

func newUnixAttestor(d WorkloadDeps, decode plugin.Decoder) (workloadattest.Attestor, error) {
	cfg := unix.DefaultConfig()
	if err := decode(&cfg); err != nil {
		return nil, err
	}
	if runtime.GOOS != "linux" {
		return nil, fmt.Errorf("the unix workload attestor needs Linux (SO_PEERCRED and pidfds), not %s", runtime.GOOS)
	}
	return unix.New(cfg, d.Log)
}

func newK8sAttestor(d WorkloadDeps, decode plugin.Decoder) (workloadattest.Attestor, error) {
	var cfg k8s.Config
	if err := decode(&cfg); err != nil {
		return nil, err
	}
	return k8s.New(cfg, d.Log)
}

func newDockerAttestor(d WorkloadDeps, decode plugin.Decoder) (workloadattest.Attestor, error) {
	var cfg docker.Config
	if err := decode(&cfg); err != nil {
		return nil, err
	}
	return docker.New(cfg, d.Log)
}

func newSystemdAttestor(d WorkloadDeps, decode plugin.Decoder) (workloadattest.Attestor, error) {
	var cfg systemd.Config
	if err := decode(&cfg); err != nil {
		return nil, err
	}
	return systemd.New(cfg, d.Log)
}
