package unix

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
)

// maxGroups is the kernel's NGROUPS_MAX.
const maxGroups = 65536

// maxPIDNamespaceDepth is the kernel's MAX_PID_NS_LEVEL plus the root.
const maxPIDNamespaceDepth = 33

// procStatus is the part of /proc/<pid>/status the attestor uses.
type procStatus struct {
	// State is the one-letter process state ('R', 'S', 'Z', ...).
	State byte
	// Groups are the supplementary group IDs, in the kernel's order.
	Groups []uint32
	// NSpidDepth is the number of PIDs on the NSpid line: one per PID
	// namespace the process is in, from that of the /proc mount down to its
	// own. Zero when the kernel wrote no NSpid line (before Linux 4.1).
	NSpidDepth int
}

// parseStatus parses the contents of /proc/<pid>/status: "Key:\tvalue" lines.
// State and Groups are required and may appear once each; other keys are
// ignored. The input comes from the kernel, but it is treated as untrusted:
// any malformed line of interest is an error.
func parseStatus(data []byte) (procStatus, error) {
	var (
		st                            procStatus
		haveState, haveGrp, haveNSpid bool
	)
	for len(data) > 0 {
		var line []byte
		line, data, _ = bytes.Cut(data, []byte{'\n'})
		key, val, ok := bytes.Cut(line, []byte{':'})
		if !ok {
			continue
		}
		switch string(key) {
		case "State":
			if haveState {
				return procStatus{}, errors.New("parse status: duplicate State line")
			}
			haveState = true
			v := bytes.TrimLeft(val, " \t")
			if len(v) == 0 || v[0] < 'A' || v[0] > 'Z' {
				return procStatus{}, fmt.Errorf("parse status: invalid State %q", val)
			}
			st.State = v[0]
		case "Groups":
			if haveGrp {
				return procStatus{}, errors.New("parse status: duplicate Groups line")
			}
			haveGrp = true
			groups, err := parseGroups(val)
			if err != nil {
				return procStatus{}, err
			}
			st.Groups = groups
		case "NSpid":
			if haveNSpid {
				return procStatus{}, errors.New("parse status: duplicate NSpid line")
			}
			haveNSpid = true
			fields := bytes.Fields(val)
			if len(fields) == 0 || len(fields) > maxPIDNamespaceDepth {
				return procStatus{}, fmt.Errorf("parse status: NSpid line with %d PIDs: want 1 to %d", len(fields), maxPIDNamespaceDepth)
			}
			for _, f := range fields {
				if _, err := strconv.ParseUint(string(f), 10, 31); err != nil || f[0] < '0' || f[0] > '9' {
					return procStatus{}, fmt.Errorf("parse status: invalid NSpid %q", f)
				}
			}
			st.NSpidDepth = len(fields)
		}
	}
	switch {
	case !haveState:
		return procStatus{}, errors.New("parse status: no State line")
	case !haveGrp:
		return procStatus{}, errors.New("parse status: no Groups line")
	}
	return st, nil
}

// parseGroups parses the space-separated decimal GIDs of a Groups line.
func parseGroups(val []byte) ([]uint32, error) {
	fields := bytes.Fields(val)
	if len(fields) > maxGroups {
		return nil, fmt.Errorf("parse status: %d groups, more than the kernel allows (%d)", len(fields), maxGroups)
	}
	groups := make([]uint32, 0, len(fields))
	for _, f := range fields {
		// ParseUint accepts only digits for base 10 with no prefix, so
		// signs, underscores and spaces are rejected.
		if len(f) == 0 || f[0] < '0' || f[0] > '9' {
			return nil, fmt.Errorf("parse status: invalid group id %q", f)
		}
		g, err := strconv.ParseUint(string(f), 10, 32)
		if err != nil {
			return nil, fmt.Errorf("parse status: invalid group id %q: %w", f, err)
		}
		groups = append(groups, uint32(g))
	}
	return groups, nil
}
