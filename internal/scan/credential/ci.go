package credential

import (
	"path"
	"strings"

	"gopkg.in/yaml.v3"
)

// IsCIConfig reports whether name (slash-separated) is a GitHub Actions
// workflow (.github/workflows/*.yml) or a GitLab CI file (.gitlab-ci.yml).
func IsCIConfig(name string) bool {
	return isGitHubWorkflow(name) || isGitLabCI(name)
}

func isGitHubWorkflow(name string) bool {
	dir := path.Dir(name)
	return isYAMLName(strings.ToLower(path.Base(name))) &&
		(dir == ".github/workflows" || strings.HasSuffix(dir, "/.github/workflows"))
}

func isGitLabCI(name string) bool {
	return strings.HasSuffix(strings.ToLower(path.Base(name)), ".gitlab-ci.yml")
}

// CIVariable is a variable or input of a CI configuration whose name says
// it holds a secret.
type CIVariable struct {
	Name string
	Node *yaml.Node // the value scalar
}

// ParseCIConfig returns the secret-named variables of a GitHub Actions
// workflow (env at workflow, job, step, container and service level; step
// with: inputs; container and service credentials) or a GitLab CI file
// (variables at top and job level, plain or {value: …}), whose value is a
// string. name selects the dialect as IsCIConfig does.
func ParseCIConfig(name string, content []byte) []CIVariable {
	var out []CIVariable
	collect := func(vars *yaml.Node) {
		mapEach(vars, func(key string, _, v *yaml.Node) {
			if v.Kind == yaml.MappingNode { // GitLab {value: …, description: …}
				v = mapGet(v, "value")
			}
			if _, ok := stringScalar(v); ok && IsSecretName(key) {
				out = append(out, CIVariable{Name: key, Node: v})
			}
		})
	}
	for _, root := range decodeYAML(content) {
		switch {
		case isGitHubWorkflow(name):
			collect(mapGet(root, "env"))
			mapEach(mapGet(root, "jobs"), func(_ string, _, job *yaml.Node) {
				collect(mapGet(job, "env"))
				seqEach(mapGet(job, "steps"), func(step *yaml.Node) {
					collect(mapGet(step, "env"))
					collect(mapGet(step, "with"))
				})
				containers := []*yaml.Node{mapGet(job, "container")}
				mapEach(mapGet(job, "services"), func(_ string, _, svc *yaml.Node) {
					containers = append(containers, svc)
				})
				for _, c := range containers {
					collect(mapGet(c, "env"))
					collect(mapGet(c, "credentials"))
				}
			})
		case isGitLabCI(name):
			collect(mapGet(root, "variables"))
			mapEach(root, func(_ string, _, job *yaml.Node) {
				collect(mapGet(job, "variables"))
			})
		}
	}
	return out
}

// DetectCIConfig reports CI variables with secret names set to literal
// values. Values that reference a secret store (${{ secrets.X }}, $VAR) or
// are placeholders (changeme, postgres, <token>) are dismissed.
func DetectCIConfig(name string, content []byte) []Hit {
	vars := ParseCIConfig(name, content)
	if len(vars) == 0 {
		return nil
	}
	lines := newLineIndex(content)
	var hits []Hit
	for _, v := range vars {
		start, end := nodeSpan(content, lines, v.Node)
		h := Hit{Start: start, End: end, Priority: priorityStructured}
		if IsReference(v.Node.Value) || IsPlaceholder(v.Node.Value) {
			h.Rule, h.Dismiss = "ci-secret-reference", true
			hits = append(hits, h)
			continue
		}
		h.Rule, h.NameOnly = "ci-literal-secret", true
		h.Description = "CI configuration sets " + v.Name + " to a literal secret instead of a secret reference"
		h.Kind = kindForName(v.Name)
		h.Severity = SeverityHigh
		h.Value = Secret(v.Node.Value)
		h.Details = map[string]string{"variable": v.Name}
		hits = append(hits, h)
	}
	return hits
}

// kindForName guesses a credential kind from a secret variable name.
func kindForName(name string) Kind {
	words := nameWords(name)
	for _, w := range words {
		switch w {
		case "PASSWORD", "PASSWD", "PASS", "PWD", "PASSPHRASE":
			return KindPassword
		}
	}
	for _, w := range words {
		switch w {
		case "TOKEN":
			return KindToken
		case "KEY", "APIKEY":
			return KindAPIKey
		}
	}
	return KindGeneric
}

// DetectEnv judges one environment variable. content must be the variable
// as "NAME=VALUE" and nameLen the length of NAME; spans are offsets into
// content. Besides the PEM and JWT recognisers run on the value, a variable
// with a secret name (IsSecretName) and a non-placeholder value is reported.
func DetectEnv(content []byte, nameLen int) []Hit {
	if nameLen < 0 || nameLen >= len(content) || content[nameLen] != '=' {
		return nil
	}
	hits := Detect("", content)
	name, value := string(content[:nameLen]), string(content[nameLen+1:])
	if !IsSecretName(name) {
		return hits
	}
	h := Hit{Start: nameLen + 1, End: len(content), Priority: priorityStructured}
	if IsPlaceholder(value) {
		h.Rule, h.Dismiss = "env-placeholder", true
	} else {
		h.Rule, h.NameOnly = "env-secret", true
		h.Description = "Environment variable " + name + " holds a static secret"
		h.Kind = kindForName(name)
		h.Severity = SeverityMedium
		h.Details = map[string]string{"variable": name}
	}
	return append(hits, h)
}
