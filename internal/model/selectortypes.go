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
