package agent

import (
	"path/filepath"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// Check reports every problem of c, as New would, without touching the data
// dir or the network (signet doctor).
func (c Config) Check() error { return c.withDefaults().validate() }

// ResolveTrustDomain is the trust domain an agent with cfg serves: the
// configured one, else the one the bootstrap CAs name, else the persisted
// agent SVID's.
func ResolveTrustDomain(cfg Config) (spiffeid.TrustDomain, error) { return resolveTrustDomain(cfg) }

// ServerID is the SPIFFE ID the server of td presents to agents.
func ServerID(td spiffeid.TrustDomain) spiffeid.ID { return serverID(td) }

// Persisted is what an agent's data dir holds, read without its lock (the
// agent may be running).
type Persisted struct {
	// SVIDPath is the agent SVID's file. SVID is nil when there is none or
	// SVIDErr says why it cannot be used.
	SVIDPath string
	SVID     *x509svid.SVID
	SVIDErr  error
	// Bundle is the trust bundle the agent persisted, nil when there is
	// none or BundleErr says why it cannot be used.
	Bundle    *spiffebundle.Bundle
	BundleErr error
}

// ReadPersisted reads the agent SVID and the trust bundle of td persisted in
// dir; it never writes. Expired SVIDs are returned as they are.
func ReadPersisted(dir string, td spiffeid.TrustDomain) Persisted {
	d := &dataDir{path: dir}
	p := Persisted{SVIDPath: filepath.Join(dir, agentSVIDFile)}
	p.SVID, p.SVIDErr = d.loadAgentSVID(td)
	p.Bundle, p.BundleErr = d.loadBundle(td)
	return p
}
