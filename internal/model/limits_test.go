package model

import (
	"fmt"
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-id/signet/internal/errkind"
)

func validEntry() Entry {
	return Entry{
		SPIFFEID:  spiffeid.RequireFromString("spiffe://example.org/web"),
		ParentID:  spiffeid.RequireFromString("spiffe://example.org/node/a"),
		Selectors: []Selector{{Type: "unix", Value: "uid:1000"}},
	}
}

func tds(n int) []spiffeid.TrustDomain {
	out := make([]spiffeid.TrustDomain, n)
	for i := range out {
		out[i] = spiffeid.RequireTrustDomainFromString(fmt.Sprintf("td%d.example", i))
	}
	return out
}

// TestEntryValidateLimits covers the limits the admin API tests cannot
// reach through the wire conversion (which refuses some earlier).
func TestEntryValidateLimits(t *testing.T) {
	longTD := spiffeid.RequireTrustDomainFromString(strings.Repeat("t", 256))
	tests := []struct {
		name   string
		modify func(e *Entry)
		want   string // "" = valid; otherwise a word of the message
	}{
		{"valid", func(*Entry) {}, ""},
		{"32 federated trust domains", func(e *Entry) { e.FederatesWith = tds(32) }, ""},
		{"33 federated trust domains", func(e *Entry) { e.FederatesWith = tds(33) }, "federates_with"},
		{"trust domain name over 255 bytes", func(e *Entry) { e.FederatesWith = []spiffeid.TrustDomain{longTD} }, "federates_with[0]"},
		{"spiffe_id over 2048 bytes", func(e *Entry) {
			e.SPIFFEID = spiffeid.RequireFromString("spiffe://example.org/" + strings.Repeat("a", 2048))
		}, "spiffe_id"},
		{"65 selectors", func(e *Entry) {
			e.Selectors = nil
			for i := range 65 {
				e.Selectors = append(e.Selectors, Selector{Type: "k8s", Value: fmt.Sprint(i)})
			}
		}, "selectors"},
		{"bad selector named by index", func(e *Entry) { e.Selectors = append(e.Selectors, Selector{Type: "X", Value: "1"}) }, "selectors[1]"},
		{"hint over 1024 bytes", func(e *Entry) { e.Hint = strings.Repeat("h", 1025) }, "hint"},
		{"hint not UTF-8", func(e *Entry) { e.Hint = "\xff" }, "hint"},
		{"129 dns names", func(e *Entry) { e.DNSNames = make([]string, 129) }, "dns_names"},
		{"bad dns name named by index", func(e *Entry) { e.DNSNames = []string{"a.example", "-"} }, "dns_names[1]"},
		{"bad label", func(e *Entry) { e.Labels = map[string]string{"": "x"} }, "labels"},
		{"id with a space", func(e *Entry) { e.ID = "a b" }, "id"},
		{"negative ttl", func(e *Entry) { e.X509TTL = -1 }, "x509_ttl"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := validEntry()
			tt.modify(&e)
			err := e.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("Validate() = %v, want nil", err)
			case tt.want != "" && (err == nil || !errkind.Is(err, errkind.InvalidArgument)):
				t.Errorf("Validate() = %v, want InvalidArgument naming %q", err, tt.want)
			case tt.want != "" && !strings.HasPrefix(err.Error(), tt.want):
				t.Errorf("Validate() = %q, want a message starting with the field %q", err, tt.want)
			}
		})
	}
}

// TestValidateLabelsNamesTheFirstInKeyOrder: with several bad labels the
// error names the first by key, whatever order the map iterates in.
func TestValidateLabelsNamesTheFirstInKeyOrder(t *testing.T) {
	labels := map[string]string{"team": "ok", "zone": "bad\x01value", "Env": "prod", "app": strings.Repeat("v", MaxLabelValueLen+1)}
	for range 20 {
		err := ValidateLabels("labels", labels)
		if err == nil || !strings.Contains(err.Error(), `"Env"`) {
			t.Fatalf("ValidateLabels = %v, want the error about \"Env\" (first by key)", err)
		}
	}
	delete(labels, "Env")
	if err := ValidateLabels("labels", labels); err == nil || !strings.Contains(err.Error(), `labels["app"]: value`) {
		t.Fatalf("ValidateLabels = %v, want the error about app's value", err)
	}
	if err := ValidateLabels("labels", map[string]string{"team": "ok", "a.b/c_d-1": ""}); err != nil {
		t.Fatalf("ValidateLabels(valid) = %v", err)
	}
	if err := ValidateLabels("labels", map[string]string{"té": "x"}); err == nil {
		t.Fatal("ValidateLabels accepted a non-ASCII key")
	}
}
