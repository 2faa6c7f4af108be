package inventory

import (
	"maps"
	"slices"
	"strings"

	"github.com/signet-id/signet/internal/store"
)

// Suggestion is what should replace a static secret: a broker provider
// (empty when the replacement is not a brokered credential), the
// configured credentials of that provider, and a sentence for people.
type Suggestion struct {
	Provider    string
	Credentials []string
	Text        string
}

// replacement is one row of the suggestion table: what a finding is, the
// broker providers that replace it (best first) and, when no provider
// does, the SPIFFE-native replacement.
type replacement struct {
	what      string
	providers []string
	native    string
}

// Broker provider names (internal/broker/provider/*), as config keys.
const (
	provPostgres  = "postgres"
	provMySQL     = "mysql"
	provAWSSTS    = "aws_sts"
	provGCPWIF    = "gcp_wif"
	provAzureWIF  = "azure_wif"
	provGitHubApp = "github_app"
	provSSH       = "ssh"
	provStatic    = "static"
)

// classify returns the replacement for a finding, from its rule, kind,
// description, details and paths (lower-cased in text).
func classify(f *store.Finding) replacement {
	rule, kind := strings.ToLower(f.RuleID), f.Kind
	var sb strings.Builder
	sb.WriteString(rule + " " + strings.ToLower(f.Description))
	for _, k := range slices.Sorted(maps.Keys(f.Details)) {
		sb.WriteString(" " + strings.ToLower(k+"="+f.Details[k]))
	}
	for _, l := range f.Locations {
		sb.WriteString(" " + strings.ToLower(l.Path))
	}
	text := sb.String()
	has := func(subs ...string) bool {
		for _, s := range subs {
			if strings.Contains(text, s) {
				return true
			}
		}
		return false
	}
	ssh := strings.Contains(rule, "openssh") || strings.Contains(rule, "ssh") || has("key_type=ssh", "/.ssh/", "id_rsa", "id_ed25519", "id_ecdsa")
	switch {
	case strings.HasPrefix(rule, "kubeconfig-"):
		return replacement{what: "Kubernetes credential in a kubeconfig", native: "a projected service account token verified by k8s_psat node attestation, and SPIFFE identities for its workloads"}
	case strings.HasPrefix(rule, "aws-") || has("aws_access_key", "aws_secret"):
		return replacement{what: "AWS access key", providers: []string{provAWSSTS}}
	case strings.HasPrefix(rule, "gcp-") || has("google_application_credentials", "service_account"):
		return replacement{what: "Google Cloud key", providers: []string{provGCPWIF}}
	case strings.HasPrefix(rule, "azure-"):
		return replacement{what: "Azure credential", providers: []string{provAzureWIF}}
	case has("pgpass", "postgres", "jdbc:postgresql", "psql"):
		return replacement{what: "PostgreSQL password", providers: []string{provPostgres}}
	case has("mysql", "mariadb", "jdbc:mysql", ".my.cnf"):
		return replacement{what: "MySQL password", providers: []string{provMySQL}}
	case has("jdbc:", "dsn", "database_url", "connection string", "connection-string"):
		return replacement{what: "database password", providers: []string{provPostgres, provMySQL}}
	case strings.Contains(rule, "github"):
		return replacement{what: "GitHub token", providers: []string{provGitHubApp},
			native: "in CI, the job's OIDC token exchanged for a SPIFFE identity (signet ci exchange)"}
	case strings.Contains(rule, "gitlab"):
		return replacement{what: "GitLab token", native: "in CI, the job's ID token exchanged for a SPIFFE identity (signet ci exchange)"}
	case rule == "ci-literal-secret" || rule == "ci-secret-reference":
		return replacement{what: "secret in a CI configuration", native: "the job's OIDC token exchanged for a SPIFFE identity (signet ci exchange), then brokered credentials"}
	case (kind == "private-key" || kind == "encrypted-private-key") && ssh:
		return replacement{what: "SSH private key", providers: []string{provSSH}}
	case kind == "private-key" || kind == "encrypted-private-key":
		return replacement{what: "TLS private key", native: "X.509-SVIDs written and rotated by the helper (signet helper)"}
	case kind == "jwt":
		return replacement{what: "long-lived JWT", native: "short-lived JWT-SVIDs from the Workload API"}
	}
	return replacement{what: "static " + orWord(kind, "secret"), providers: []string{provStatic},
		native: "with no other option: a sealed static secret, rotated"}
}

func orWord(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// Suggest returns the suggested replacement of a finding, naming the
// broker's configured credentials (name → provider) of the fitting
// provider when there are any. Every finding gets a suggestion.
func Suggest(f *store.Finding, configured map[string]string) Suggestion {
	r := classify(f)
	if len(r.providers) == 0 {
		return Suggestion{Text: r.native}
	}
	var s Suggestion
	for _, p := range r.providers {
		for _, name := range slices.Sorted(maps.Keys(configured)) {
			if configured[name] == p {
				if s.Provider == "" {
					s.Provider = p
				}
				if configured[name] == s.Provider {
					s.Credentials = append(s.Credentials, name)
				}
			}
		}
	}
	if s.Provider == "" {
		s.Provider = r.providers[0]
	}
	noun := "brokered " + strings.ReplaceAll(s.Provider, "_", " ") + " credential"
	switch s.Provider {
	case provPostgres:
		noun = "brokered postgres credential"
	case provStatic:
		noun = "sealed static secret with rotation"
	}
	switch len(s.Credentials) {
	case 0:
		s.Text = noun + " (provider " + s.Provider + ")"
		if len(r.providers) > 1 {
			s.Text = "brokered " + strings.Join(r.providers, " or ") + " credential (provider " + strings.Join(r.providers, " or ") + ")"
		}
		s.Text += ": none is configured yet (broker.credentials)"
	case 1:
		s.Text = noun + " " + s.Credentials[0] + " (provider " + s.Provider + ")"
	default:
		s.Text = noun + " " + s.Credentials[0] + " (provider " + s.Provider + "; also " + strings.Join(s.Credentials[1:], ", ") + ")"
	}
	if r.native != "" && s.Provider != provStatic {
		s.Text += "; or " + r.native
	}
	return s
}
