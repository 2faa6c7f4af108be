package ci

import (
	"fmt"
	"strconv"

	"github.com/signet-id/signet/internal/model"
)

// Claims that become selectors, per kind. A selector is
// <issuer name>:<claim>:<value>, e.g. github:repository:acme/app.
var kindClaims = map[string][]string{
	KindGitHub: {"repository", "repository_owner", "repository_id", "ref", "ref_type", "sha", "environment",
		"workflow_ref", "job_workflow_ref", "event_name", "actor", "runner_environment"},
	KindGitLab: {"project_path", "project_id", "namespace_path", "ref", "ref_type", "ref_protected", "environment",
		"pipeline_source", "user_login"},
	KindGeneric: {"sub"},
}

// auditClaims are the claims each kind's audit records carry.
var auditClaims = map[string][]string{
	KindGitHub:  {"repository", "ref", "workflow_ref", "run_id", "actor"},
	KindGitLab:  {"project_path", "ref", "pipeline_id", "job_id", "user_login"},
	KindGeneric: {},
}

// claimValue is a claim as a selector value: strings as they are, numbers
// and booleans in their JSON text; anything else (objects, arrays, null)
// has no selector.
func claimValue(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		return x, x != ""
	case bool:
		return strconv.FormatBool(x), true
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64), true
	case fmt.Stringer:
		return x.String(), true
	}
	return "", false
}

// selectors maps a verified claim set to the job's selectors. Values that
// are not valid selector values (too long, unprintable) are left out, so
// no entry can match on them.
func (s *issuerSettings) selectors(claims map[string]any) []model.Selector {
	var out []model.Selector
	add := func(value string) {
		sel := model.Selector{Type: s.name, Value: value}
		if sel.Validate() == nil {
			out = append(out, sel)
		}
	}
	for _, c := range kindClaims[s.kind] {
		if v, ok := claimValue(claims[c]); ok {
			add(c + ":" + v)
		}
	}
	for _, c := range s.claims {
		if v, ok := claimValue(claims[c]); ok {
			add("claim:" + c + ":" + v)
		}
	}
	return out
}

// detail is what audit records say about the job.
func (s *issuerSettings) detail(claims map[string]any) map[string]string {
	d := map[string]string{}
	for _, c := range auditClaims[s.kind] {
		if v, ok := claimValue(claims[c]); ok {
			d[c] = v
		}
	}
	return d
}
