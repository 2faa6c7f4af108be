package model

import (
	"slices"
	"strings"

	"github.com/signet-id/signet/internal/errkind"
	"github.com/signet-id/signet/internal/logsafe"
)

// SelectorKind tells which side of attestation produces a selector type.
type SelectorKind string

// Selector kinds.
const (
	WorkloadSelector SelectorKind = "workload" // a workload attestor on the agent
	NodeSelector     SelectorKind = "node"     // a node attestor on the server
)

// SelectorType is a selector type a built-in attestor produces, with the
// check of its values.
type SelectorType struct {
	Name string // the selector type, which is the attestor's name: "unix"
	Kind SelectorKind
	// Validate checks a value that already passed the generic checks of
	// Selector.Validate (non-empty, at most MaxSelectorValueLen bytes,
	// printable, no surrounding spaces). Its error says what is accepted.
	Validate func(value string) error
}

// selectorTypes is the one list of the selector types of Signet's built-in
// attestors: adding an attestor that produces selectors adds its line here
// (node attestors such as x509pop or aws_iid with Kind NodeSelector). Types
// not listed stay allowed, since a plugin may produce them, but their
// values are only checked generically.
var selectorTypes = map[string]SelectorType{
	"unix": {Name: "unix", Kind: WorkloadSelector, Validate: validateUnixSelector}, // internal/workloadattest/unix
	// Workload attestors internal/workloadattest/{k8s,docker,systemd}: KEY:VALUE.
	"k8s": workloadType("k8s", "ns", "sa", "pod-name", "pod-uid", "pod-label", "pod-owner",
		"container-name", "container-image", "node-name"),
	"docker":  workloadType("docker", "label", "image_id", "image_name", "env"),
	"systemd": workloadType("systemd", "id", "fragment_path"),
	// Node attestors (internal/nodeattest/<method>): values are KEY:VALUE.
	"x509pop":   nodeType("x509pop", "subject:cn", "ca:fingerprint", "san:dns", "san:uri", "serialnumber"),
	"sshpop":    nodeType("sshpop", "principal", "key_id"),
	"tpm":       nodeType("tpm", "ek_hash", "manufacturer"),
	"aws_iid":   nodeType("aws_iid", "account", "region", "az", "instance_type", "image_id"),
	"gcp_iit":   nodeType("gcp_iit", "project-id", "zone", "instance-name", "sa"),
	"azure_msi": nodeType("azure_msi", "tenant", "subscription", "resource-group", "vm-name"),
	"k8s_psat": nodeType("k8s_psat", "cluster", "agent_ns", "agent_sa", "agent_pod_name", "agent_pod_uid",
		"agent_node_name", "agent_node_uid", "agent_node_label", "agent_pod_label"),
}

// workloadType is a workload attestor's selector type, whose values are
// one of keys, a colon and a non-empty value ("ns:shop").
func workloadType(name string, keys ...string) SelectorType {
	t := nodeType(name, keys...)
	t.Kind = WorkloadSelector
	return t
}

// nodeType is a node attestor's selector type, whose values are one of
// keys, a colon and a non-empty value ("subject:cn:web-7").
func nodeType(name string, keys ...string) SelectorType {
	return SelectorType{Name: name, Kind: NodeSelector, Validate: func(v string) error {
		for _, k := range keys {
			if rest, ok := strings.CutPrefix(v, k+":"); ok && rest != "" {
				return nil
			}
		}
		return errkind.New(errkind.InvalidArgument, "%s selectors are KEY:VALUE with KEY one of %s", name, joinNames(keys))
	}}
}

// LookupSelectorType returns the built-in selector type called name, if
// one is.
func LookupSelectorType(name string) (SelectorType, bool) {
	t, ok := selectorTypes[name]
	return t, ok
}

// SelectorTypeNames returns the names of the built-in selector types,
// sorted.
func SelectorTypeNames() []string {
	out := make([]string, 0, len(selectorTypes))
	for n := range selectorTypes {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// validateBuiltinSelector applies the type's own check to s, if its type
// is built in.
func validateBuiltinSelector(s Selector) error {
	t, ok := selectorTypes[s.Type]
	if !ok {
		return nil
	}
	if err := t.Validate(s.Value); err != nil {
		msg, _ := errkind.Public(err)
		return errkind.New(errkind.InvalidArgument, "invalid selector %q: %s", logsafe.Truncate(s.String()), msg)
	}
	return nil
}

// joinNames lists names for an error message: "a, b or c".
func joinNames(names []string) string {
	if len(names) < 2 {
		return strings.Join(names, "")
	}
	return strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
}
