// Package k8spsat implements the k8s_psat node attestation method: an agent
// running in a Kubernetes pod proves which node it runs on with a projected
// service account token (PSAT) — audience-bound, short-lived and bound to
// the agent's pod.
//
// The agent (Attestor) sends Payload: the name of its cluster, as the
// server's configuration knows it, and the token read from the projected
// volume. The server (Verifier) asks that cluster's API server to review
// the token (a TokenReview of authentication.k8s.io/v1 with the configured
// audience): the API server checks the signature, expiry, audience and
// that the pod it is bound to still exists. The server then checks that
// the service account is on the cluster's allow list, reads the pod named
// by the review (its UID must be the one the token is bound to) and the
// node the pod is scheduled on.
//
// The agent ID is spiffe://<td>/signet/agent/k8s_psat/<cluster>/<node-uid>:
// one agent per node. A second agent claiming a node whose agent SVID is
// still valid is refused; once that SVID has expired (the agent is gone)
// the node may attest again, and a node never seen before is admitted
// through the store's first-use admission, so two concurrent first
// attestations of one node cannot both succeed.
//
// This package is the agent half (Attestor) and what both halves share; it
// imports none of Kubernetes' libraries, so that the agent links none of
// them (internal/deptest checks the slim agent). The server half, which
// calls the API server with client-go, is package
// internal/nodeattest/k8spsat/verifier.
//
// The node's selectors (type k8s_psat) are cluster, agent_ns, agent_sa,
// agent_pod_name, agent_pod_uid, agent_node_name, agent_node_uid,
// agent_node_label:<key>:<value> and agent_pod_label:<key>:<value>.
package k8spsat

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-id/signet/internal/logsafe"
	"github.com/signet-id/signet/internal/model"
)

// Name is the attestation method name, sent as attestation_type.
const Name = "k8s_psat"

// DefaultAudience is the audience the server asks the API server to check
// when a cluster's configuration names none; the agent's projected token
// must be issued for it.
const DefaultAudience = "signet-server"

// DefaultTokenPath is where the Helm chart mounts the agent's projected
// token.
const DefaultTokenPath = "/var/run/secrets/tokens/signet-agent"

// MaxTokenSize bounds a service account token (Kubernetes' are 1 to 2 KiB).
const MaxTokenSize = 16 << 10

// Keys of the TokenReview's user.extra that bind a token to its pod (and,
// from Kubernetes 1.32, to the pod's node).
const (
	ExtraPodName  = "authentication.kubernetes.io/pod-name"
	ExtraPodUID   = "authentication.kubernetes.io/pod-uid"
	ExtraNodeName = "authentication.kubernetes.io/node-name"
)

// Payload is the agent's evidence, sent as JSON.
type Payload struct {
	// Cluster names the cluster in the server's configuration.
	Cluster string `json:"cluster"`
	// Token is the projected service account token.
	Token string `json:"token"`
}

// ParsePayload decodes an agent's payload strictly (unknown fields are an
// error) and checks its shape: a valid cluster name, and a token of at
// most MaxTokenSize bytes that looks like a JWS in compact form. Only the
// API server can tell whether the token is good. Errors never hold the
// token.
func ParsePayload(b []byte) (Payload, error) {
	var p Payload
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return Payload{}, errors.New("payload is not a k8s_psat payload: want JSON {\"cluster\": …, \"token\": …}")
	}
	if dec.More() {
		return Payload{}, errors.New("payload has data after its JSON object")
	}
	if err := CheckClusterName(p.Cluster); err != nil {
		return Payload{}, fmt.Errorf("payload cluster: %w", err)
	}
	switch {
	case p.Token == "":
		return Payload{}, errors.New("payload token is empty")
	case len(p.Token) > MaxTokenSize:
		return Payload{}, fmt.Errorf("payload token is %d bytes: at most %d", len(p.Token), MaxTokenSize)
	case strings.Count(p.Token, ".") != 2 ||
		strings.Trim(p.Token, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.") != "":
		return Payload{}, errors.New("payload token is not a JWT in compact form")
	}
	return p, nil
}

// CheckClusterName reports whether s can name a cluster: 1 to 63 lower-case
// letters, digits and '-', starting and ending with a letter or digit (a
// DNS label, so it is also a valid SPIFFE ID path segment).
func CheckClusterName(s string) error {
	if !IsDNSLabel(s) {
		return fmt.Errorf("%q is not a cluster name: want 1 to 63 lower-case letters, digits and '-', "+
			"starting and ending with a letter or digit (an RFC 1123 label)", logsafe.Truncate(s))
	}
	return nil
}

// IsDNSLabel reports whether s is an RFC 1123 label as Kubernetes checks
// names (k8s.io/apimachinery's validation.IsDNS1123Label): 1 to 63
// characters of [a-z0-9-], starting and ending with [a-z0-9].
func IsDNSLabel(s string) bool {
	return len(s) <= 63 && isLabelChars(s)
}

// IsDNSSubdomain reports whether s is an RFC 1123 subdomain as Kubernetes
// checks object names (validation.IsDNS1123Subdomain): at most 253
// characters, dot-separated parts of [a-z0-9-] that start and end with
// [a-z0-9] (a part may be longer than 63 characters, as there).
func IsDNSSubdomain(s string) bool {
	if len(s) == 0 || len(s) > 253 {
		return false
	}
	for part := range strings.SplitSeq(s, ".") {
		if !isLabelChars(part) {
			return false
		}
	}
	return true
}

// isLabelChars reports whether s is one or more of [a-z0-9-], starting and
// ending with [a-z0-9].
func isLabelChars(s string) bool {
	if s == "" || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' {
			return false
		}
	}
	return true
}

// Identity is what a TokenReview proved about the agent's token.
type Identity struct {
	Namespace      string // the service account's namespace
	ServiceAccount string // the service account's name
	PodName        string
	PodUID         string
	// NodeName is the node the token is bound to, when the API server says
	// (Kubernetes 1.32 and later); empty otherwise.
	NodeName string
}

// saPrefix starts the username of every service account.
const saPrefix = "system:serviceaccount:"

// ParseIdentity checks the user of an authenticated TokenReview: a service
// account username ("system:serviceaccount:<namespace>:<name>") and extra
// fields binding the token to exactly one pod. extra is the review's
// status.user.extra.
func ParseIdentity(username string, extra map[string][]string) (Identity, error) {
	rest, ok := strings.CutPrefix(username, saPrefix)
	if !ok {
		return Identity{}, fmt.Errorf("token user %q is not a service account", logsafe.Truncate(username))
	}
	ns, sa, ok := strings.Cut(rest, ":")
	if !ok || !IsDNSLabel(ns) || !IsDNSSubdomain(sa) {
		return Identity{}, fmt.Errorf("token user %q is not a service account username", logsafe.Truncate(username))
	}
	one := func(key string, optional bool) (string, error) {
		v := extra[key]
		switch {
		case len(v) == 0 && optional:
			return "", nil
		case len(v) != 1 || v[0] == "":
			return "", fmt.Errorf("token is not bound to one pod (user.extra %s has %d values): "+
				"mount a projected service account token", key, len(v))
		}
		return v[0], nil
	}
	id := Identity{Namespace: ns, ServiceAccount: sa}
	var err error
	if id.PodName, err = one(ExtraPodName, false); err != nil {
		return Identity{}, err
	}
	if id.PodUID, err = one(ExtraPodUID, false); err != nil {
		return Identity{}, err
	}
	if id.NodeName, err = one(ExtraNodeName, true); err != nil {
		return Identity{}, err
	}
	if !IsDNSSubdomain(id.PodName) {
		return Identity{}, fmt.Errorf("token pod name %q is not a pod name", logsafe.Truncate(id.PodName))
	}
	if !validUID(id.PodUID) {
		return Identity{}, fmt.Errorf("token pod uid %q is not a UID", logsafe.Truncate(id.PodUID))
	}
	if id.NodeName != "" && !IsDNSSubdomain(id.NodeName) {
		return Identity{}, fmt.Errorf("token node name %q is not a node name", logsafe.Truncate(id.NodeName))
	}
	return id, nil
}

// validUID reports whether s can be a Kubernetes object UID: 1 to 64
// letters, digits and '-' (the API server makes RFC 4122 UUIDs), so it is
// also a valid SPIFFE ID path segment.
func validUID(s string) bool {
	return s != "" && len(s) <= 64 &&
		strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-") == ""
}

// ServiceAccountName returns the allow-list form of a service account,
// "<namespace>:<name>".
func (id Identity) ServiceAccountName() string { return id.Namespace + ":" + id.ServiceAccount }

// AgentID returns the agent ID of the node whose UID is nodeUID in
// cluster: spiffe://<td>/signet/agent/k8s_psat/<cluster>/<node-uid>.
func AgentID(td spiffeid.TrustDomain, cluster, nodeUID string) (spiffeid.ID, error) {
	if !validUID(nodeUID) {
		return spiffeid.ID{}, fmt.Errorf("node uid %q is not a UID", logsafe.Truncate(nodeUID))
	}
	return spiffeid.FromSegments(td, "signet", "agent", Name, cluster, nodeUID)
}

// Node is what the server read of the agent's pod and node.
type Node struct {
	Cluster    string
	Identity   Identity
	NodeName   string
	NodeUID    string
	PodLabels  map[string]string
	NodeLabels map[string]string
}

// Selectors returns the node selectors of n, sorted. Labels whose selector
// would be malformed (over model.MaxSelectorValueLen bytes) are left out.
func Selectors(n Node) []model.Selector {
	sel := func(k, v string) model.Selector { return model.Selector{Type: Name, Value: k + ":" + v} }
	out := []model.Selector{
		sel("cluster", n.Cluster),
		sel("agent_ns", n.Identity.Namespace),
		sel("agent_sa", n.Identity.ServiceAccount),
		sel("agent_pod_name", n.Identity.PodName),
		sel("agent_pod_uid", n.Identity.PodUID),
		sel("agent_node_name", n.NodeName),
		sel("agent_node_uid", n.NodeUID),
	}
	labels := func(key string, m map[string]string) {
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			if s := sel(key, k+":"+m[k]); s.Validate() == nil {
				out = append(out, s)
			}
		}
	}
	labels("agent_node_label", n.NodeLabels)
	labels("agent_pod_label", n.PodLabels)
	return model.SortSelectors(out)
}

// SelectorKeys are the keys of k8s_psat selector values (KEY:VALUE).
var SelectorKeys = []string{
	"cluster", "agent_ns", "agent_sa", "agent_pod_name", "agent_pod_uid",
	"agent_node_name", "agent_node_uid", "agent_node_label", "agent_pod_label",
}
