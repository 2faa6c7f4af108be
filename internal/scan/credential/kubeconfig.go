package credential

import (
	"encoding/base64"
	"strings"

	"gopkg.in/yaml.v3"
)

// KubeconfigCredential is one static credential in a kubeconfig's users
// list.
type KubeconfigCredential struct {
	User  string     // the users[].name entry
	Field string     // "token", "client-key-data", "password", "auth-provider.client-secret", ...
	Node  *yaml.Node // the scalar holding the value
}

// ParseKubeconfig returns the static credentials of every kubeconfig
// document in content: users[].user.token, client-key-data, password (basic
// auth) and the client-secret / refresh-token of a legacy auth-provider.
// References to files (tokenFile, client-key) and exec plugins hold no
// secret and are not returned. Documents without a users list and either
// clusters, contexts or "kind: Config" are not kubeconfigs and are ignored.
func ParseKubeconfig(content []byte) []KubeconfigCredential {
	var out []KubeconfigCredential
	for _, root := range decodeYAML(content) {
		users := mapGet(root, "users")
		if users == nil || users.Kind != yaml.SequenceNode {
			continue
		}
		kind, _ := stringScalar(mapGet(root, "kind"))
		if kind != "Config" && mapGet(root, "clusters") == nil && mapGet(root, "contexts") == nil {
			continue
		}
		seqEach(users, func(item *yaml.Node) {
			name, _ := stringScalar(mapGet(item, "name"))
			user := mapGet(item, "user")
			for _, f := range []string{"token", "client-key-data", "password"} {
				if v := mapGet(user, f); v != nil && v.Kind == yaml.ScalarNode {
					out = append(out, KubeconfigCredential{User: name, Field: f, Node: v})
				}
			}
			cfg := mapGet(mapGet(user, "auth-provider"), "config")
			for _, f := range []string{"client-secret", "refresh-token"} {
				if v := mapGet(cfg, f); v != nil && v.Kind == yaml.ScalarNode {
					out = append(out, KubeconfigCredential{User: name, Field: "auth-provider." + f, Node: v})
				}
			}
		})
	}
	return out
}

// DetectKubeconfig reports the static credentials of a kubeconfig.
func DetectKubeconfig(content []byte) []Hit {
	creds := ParseKubeconfig(content)
	if len(creds) == 0 {
		return nil
	}
	lines := newLineIndex(content)
	var hits []Hit
	for _, c := range creds {
		start, end := nodeSpan(content, lines, c.Node)
		h := Hit{
			Start:    start,
			End:      end,
			Severity: SeverityHigh,
			Details:  map[string]string{"user": c.User, "field": c.Field},
			Priority: priorityStructured,
		}
		if IsPlaceholder(c.Node.Value) {
			h.Rule, h.Dismiss = "kubeconfig-placeholder", true
			hits = append(hits, h)
			continue
		}
		h.Value = Secret(c.Node.Value)
		switch c.Field {
		case "token":
			h.Rule, h.Kind = "kubeconfig-token", KindToken
			h.Description = "Static bearer token in kubeconfig"
		case "password":
			h.Rule, h.Kind = "kubeconfig-basic-auth", KindPassword
			h.Description = "Basic-auth password in kubeconfig"
		case "client-key-data":
			h.Rule, h.Kind = "kubeconfig-client-key", KindPrivateKey
			h.Description = "Client private key embedded in kubeconfig"
			if key, typ := decodeEmbeddedKey(c.Node.Value); key != nil {
				h.Value = key
				h.Details["key_type"] = typ
			}
		default:
			h.Rule, h.Kind = "kubeconfig-auth-provider-secret", KindToken
			h.Description = "Auth-provider secret in kubeconfig"
		}
		hits = append(hits, h)
	}
	return hits
}

// decodeEmbeddedKey decodes base64 PEM key data (kubeconfig
// client-key-data) and returns the key's canonical PKCS#8 form and type, or
// nil when it does not hold a parsable unencrypted key.
func decodeEmbeddedKey(b64 string) (Secret, string) {
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(b64))
	if err != nil {
		return nil, ""
	}
	for _, b := range scanPEMBlocks(raw) {
		info, err := ParsePrivateKeyBlock(b.block)
		if err == nil && info.Key != nil {
			return canonicalKey(info.Key), info.Type
		}
	}
	return nil, ""
}
