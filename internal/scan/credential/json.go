package credential

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"strings"
)

// maxJSONDepth bounds the nesting followed by walkJSON.
const maxJSONDepth = 32

// JSONString is one string value of a JSON document with the key path
// leading to it (array elements contribute no key).
type JSONString struct {
	Path  []string
	Value string
	// Start and End are the byte span of the string's body as written,
	// between its quotes (escapes not decoded).
	Start, End int
}

// WalkJSON tokenizes a JSON document and returns its string values at
// depth up to maxJSONDepth, in document order. On a syntax error it returns
// the values read so far.
func WalkJSON(content []byte) []JSONString {
	type frame struct {
		obj     bool
		key     string // the key whose value is being read, in an object
		wantKey bool   // the next string in this object is a key
	}
	var (
		out []JSONString
		st  []frame
	)
	dec := json.NewDecoder(bytes.NewReader(content))
	valueDone := func() {
		if n := len(st); n > 0 && st[n-1].obj {
			st[n-1].wantKey = true
		}
	}
	for {
		before := int(dec.InputOffset())
		tok, err := dec.Token()
		if err != nil {
			return out
		}
		switch t := tok.(type) {
		case json.Delim:
			if t == '{' || t == '[' {
				if len(st) >= maxJSONDepth {
					return out
				}
				st = append(st, frame{obj: t == '{', wantKey: t == '{'})
				continue
			}
			st = st[:len(st)-1]
			valueDone()
		case string:
			if n := len(st); n > 0 && st[n-1].obj && st[n-1].wantKey {
				st[n-1].key, st[n-1].wantKey = t, false
				continue
			}
			var path []string
			for _, f := range st {
				if f.obj {
					path = append(path, f.key)
				}
			}
			end := int(dec.InputOffset())
			start := before + bytes.IndexByte(content[before:end], '"') + 1
			out = append(out, JSONString{Path: path, Value: t, Start: start, End: max(end-1, start)})
			valueDone()
		default:
			valueDone()
		}
	}
}

func looksLikeJSONCredentials(lowerBase string, content []byte) bool {
	if !strings.HasSuffix(lowerBase, ".json") && lowerBase != ".dockercfg" {
		return false
	}
	for _, kw := range []string{`"auths"`, `"auth"`, `service_account`, `authorized_user`,
		`"clientSecret"`, `"RefreshToken"`, `"refreshToken"`, `"client_secret"`} {
		if bytes.Contains(content, []byte(kw)) {
			return true
		}
	}
	return false
}

// DetectJSONCredentials reports credentials in JSON credential files:
// Docker config.json auths (auth, identitytoken, registrytoken, password)
// and legacy .dockercfg, GCP service-account keys and authorized-user
// refresh tokens, Azure SDK auth files (clientSecret), MSAL token caches
// (RefreshToken secrets) and Azure CLI accessTokens.json refresh tokens.
// base is the file's base name.
func DetectJSONCredentials(base string, content []byte) []Hit {
	strs := WalkJSON(content)
	if len(strs) == 0 {
		return nil
	}
	top := map[string]string{}
	for _, s := range strs {
		if len(s.Path) == 1 {
			top[s.Path[0]] = s.Value
		}
	}
	var hits []Hit
	add := func(s JSONString, rule, desc string, kind Kind, sev Severity, details map[string]string) {
		h := Hit{Start: s.Start, End: s.End, Priority: priorityStructured}
		if IsPlaceholder(s.Value) {
			h.Rule, h.Dismiss = rule+"-placeholder", true
		} else {
			h.Rule, h.Description, h.Kind, h.Severity = rule, desc, kind, sev
			h.Value = Secret(s.Value)
			h.Details = details
		}
		hits = append(hits, h)
	}
	addDocker := func(s JSONString, registry, field string) {
		details := map[string]string{"registry": registry, "field": field}
		if field == "auth" {
			user, pw, ok := decodeDockerAuth(s.Value)
			if ok && pw == "" {
				s.Value = "" // a user name alone is no credential
			}
			if ok {
				details["user"] = user
			}
		}
		add(s, "docker-config-auth", "Registry credential in Docker config", KindPassword, SeverityHigh, details)
	}
	for _, s := range strs {
		p := s.Path
		switch {
		// Docker: {"auths": {"registry": {"auth": "...", ...}}}
		case len(p) == 3 && p[0] == "auths" && isDockerSecretField(p[2]):
			addDocker(s, p[1], p[2])
		// Legacy ~/.dockercfg: {"registry": {"auth": "..."}}
		case base == ".dockercfg" && len(p) == 2 && isDockerSecretField(p[1]):
			addDocker(s, p[0], p[1])
		case len(p) == 1 && p[0] == "private_key" && top["type"] == "service_account":
			before := len(hits)
			add(s, "gcp-service-account-key", "GCP service-account private key", KindCloudCredential, SeverityCritical,
				map[string]string{"client_email": top["client_email"], "project_id": top["project_id"]})
			if h := &hits[before]; !h.Dismiss {
				if key, typ := parsePEMKey(s.Value); key != nil {
					h.Value = key
					h.Details["key_type"] = typ
				}
			}
		case len(p) == 1 && p[0] == "refresh_token" && top["type"] == "authorized_user":
			add(s, "gcp-authorized-user", "GCP user refresh token (application default credentials)", KindCloudCredential, SeverityHigh,
				map[string]string{"client_id": top["client_id"]})
		case len(p) == 1 && p[0] == "clientSecret" && top["clientId"] != "":
			add(s, "azure-sdk-auth", "Azure service-principal client secret", KindCloudCredential, SeverityCritical,
				map[string]string{"client_id": top["clientId"], "tenant_id": top["tenantId"]})
		case len(p) == 3 && p[0] == "RefreshToken" && p[2] == "secret":
			add(s, "azure-msal-refresh-token", "Azure refresh token in MSAL token cache", KindCloudCredential, SeverityHigh, nil)
		case base == "accessTokens.json" && len(p) == 1 && p[0] == "refreshToken":
			add(s, "azure-cli-refresh-token", "Azure refresh token in CLI token file", KindCloudCredential, SeverityHigh, nil)
		case base == "service_principal_entries.json" && len(p) == 1 && p[0] == "client_secret":
			add(s, "azure-sp-secret", "Azure service-principal secret in CLI file", KindCloudCredential, SeverityCritical, nil)
		}
	}
	return hits
}

func isDockerSecretField(f string) bool {
	return f == "auth" || f == "identitytoken" || f == "registrytoken" || f == "password"
}

// parsePEMKey parses the first unencrypted private key in PEM text and
// returns its canonical form and type.
func parsePEMKey(text string) (Secret, string) {
	for _, b := range scanPEMBlocks([]byte(text)) {
		if info, err := ParsePrivateKeyBlock(b.block); err == nil && info.Key != nil {
			return canonicalKey(info.Key), info.Type
		}
	}
	return nil, ""
}

// decodeDockerAuth splits a Docker "auth" value (base64 of user:password).
func decodeDockerAuth(v string) (user, password string, ok bool) {
	raw, err := base64.StdEncoding.DecodeString(v)
	if err != nil {
		return "", "", false
	}
	return strings.Cut(string(raw), ":")
}
