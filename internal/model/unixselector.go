package model

import (
	"path"
	"strconv"
	"strings"

	"github.com/signet-id/signet/internal/errkind"
)

// unixSelectorNames are the selectors of the unix workload attestor
// (internal/workloadattest/unix, see its package doc), each with the check
// of what follows "name:".
var unixSelectorNames = map[string]func(name, rest string) error{
	"uid":                 unixID,
	"gid":                 unixID,
	"supplementary_gid":   unixID,
	"user":                unixName,
	"group":               unixName,
	"supplementary_group": unixName,
	"path":                unixPath,
	"sha256":              unixSHA256,
	"container":           unixContainer,
}

// unixSelectorList is unixSelectorNames' keys in the order the attestor's
// documentation gives them, for error messages.
var unixSelectorList = []string{"uid", "gid", "user", "group", "supplementary_gid", "supplementary_group", "path", "sha256", "container"}

// validateUnixSelector checks a unix selector value, "name:rest", against
// what the attestor produces: anything else could never match a workload.
func validateUnixSelector(v string) error {
	name, rest, ok := strings.Cut(v, ":")
	check := unixSelectorNames[name]
	if !ok || check == nil {
		return errkind.New(errkind.InvalidArgument,
			"the unix attestor produces <name>:<value> with name %s, for example unix:uid:1000", joinNames(unixSelectorList))
	}
	return check(name, rest)
}

// unixID accepts a decimal uint32 as the attestor prints it: no sign, no
// leading zeros.
func unixID(name, s string) error {
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil || strconv.FormatUint(n, 10) != s {
		return errkind.New(errkind.InvalidArgument,
			"%s must be a decimal number from 0 to 4294967295 without leading zeros, such as unix:%s:1000", name, name)
	}
	return nil
}

func unixName(name, s string) error {
	if s == "" {
		return errkind.New(errkind.InvalidArgument, "%s must not be empty: give a name, such as unix:%s:www-data", name, name)
	}
	return nil
}

// unixPath accepts the absolute, clean path of an executable, as the kernel
// reports it.
func unixPath(name, s string) error {
	if !strings.HasPrefix(s, "/") || path.Clean(s) != s {
		return errkind.New(errkind.InvalidArgument,
			"%s must be an absolute path without '.', '..' or repeated or trailing '/', such as unix:path:/usr/bin/web", name)
	}
	return nil
}

// unixSHA256 accepts 64 lower-case hex digits.
func unixSHA256(name, s string) error {
	ok := len(s) == 64
	for i := 0; ok && i < len(s); i++ {
		c := s[i]
		ok = c >= '0' && c <= '9' || c >= 'a' && c <= 'f'
	}
	if !ok {
		return errkind.New(errkind.InvalidArgument, "%s must be 64 lower-case hex digits, the executable's sha256sum", name)
	}
	return nil
}

// unixContainer accepts only "true": the attestor marks containerized
// callers and says nothing of the others.
func unixContainer(name, s string) error {
	if s != "true" {
		return errkind.New(errkind.InvalidArgument,
			"%s takes only the value true (unix:container:true, a caller in another PID namespace than the agent's)", name)
	}
	return nil
}
