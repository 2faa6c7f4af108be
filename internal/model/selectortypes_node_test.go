package model

import "testing"

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
