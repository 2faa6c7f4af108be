package model

import (
	"strings"
	"testing"
)

func TestNodeSelectorTypes(t *testing.T) {
	for _, tc := range []struct {
		sel  string
		good bool
	}{
		{"x509pop:subject:cn:web-7", true},
		{"x509pop:ca:fingerprint:0a1b", true},
		{"x509pop:subject:cn:", false},
		{"x509pop:subject:web-7", false},
		{"aws_iid:account:123456789012", true},
		{"aws_iid:iamrole:deploy", false},
		{"gcp_iit:project-id:my-project", true},
		{"azure_msi:vm-name:web", true},
		{"sshpop:principal:host-1.example.org", true},
		{"tpm:ek_hash:abc", true},
		{"tpm:vendor:IBM", false},
	} {
		s, err := ParseSelector(tc.sel)
		if err == nil {
			err = s.Validate()
		}
		if (err == nil) != tc.good {
			t.Errorf("Validate(%q) = %v, want valid %v", tc.sel, err, tc.good)
		}
	}
}

func TestValidateDNSNameMessages(t *testing.T) {
	for _, tc := range []struct{ name, want string }{
		{"10.0.0.1", "is an IP address"},
		{"::1", "is an IP address"},
		{"bücher.example", "'ü' is not allowed"},
		{"a_b.example", `'_' is not allowed`},
		{"*.web.example.org", ""},
		{"web-1.example.org", ""},
	} {
		err := ValidateDNSName(tc.name)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("ValidateDNSName(%q) = %v, want nil", tc.name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("ValidateDNSName(%q) = %v, want %q", tc.name, err, tc.want)
		}
	}
}
