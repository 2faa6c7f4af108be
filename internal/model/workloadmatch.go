package model

// ContainerSelector is the selector the unix workload attestor adds for a
// caller whose PID namespace differs from the agent's: a process in a
// container, which must not pass for a host process of the same uid.
var ContainerSelector = Selector{Type: "unix", Value: "container:true"}

// WorkloadMatches reports whether a Workload API caller with the selectors
// caller gets the entry whose selectors are entry. Both must be in canonical
// order (SortSelectors).
//
// The rule is SPIFFE's subset rule, with one exception that keeps
// containers apart from the host: an entry whose selectors are all of type
// unix describes host processes (a uid, a path on the host), so it never
// matches a containerized caller (one with ContainerSelector) unless the
// entry itself carries ContainerSelector. An entry that also names, say, a
// k8s or docker selector already says which container it means.
//
// The agent decides every workload match with this function and nothing
// else.
func WorkloadMatches(entry, caller []Selector) bool {
	if !SubsetOf(entry, caller) {
		return false
	}
	if !containsSelector(caller, ContainerSelector) {
		return true
	}
	for _, s := range entry {
		if s.Type != ContainerSelector.Type || s == ContainerSelector {
			// A non-unix selector, or the entry opts in to containers.
			return true
		}
	}
	return false
}

// containsSelector reports whether the canonical set holds s.
func containsSelector(set []Selector, s Selector) bool {
	return SubsetOf([]Selector{s}, set)
}
