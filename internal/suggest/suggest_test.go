package suggest

import "testing"

func TestDistance(t *testing.T) {
	for _, tt := range []struct {
		a, b string
		want int
	}{
		{"", "", 0}, {"abc", "", 3}, {"driver", "driver", 0},
		{"drivr", "driver", 1}, {"trust_domian", "trust_domain", 1}, {"bind_adress", "bind_address", 1},
		{"ttls", "ttl", 1}, {"key_file", "cert_file", 3}, {"ab", "ba", 1}, {"abc", "ca", 3},
	} {
		if got := Distance(tt.a, tt.b); got != tt.want {
			t.Errorf("Distance(%q, %q) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
		if got := Distance(tt.b, tt.a); got != tt.want {
			t.Errorf("Distance(%q, %q) = %d, want %d", tt.b, tt.a, got, tt.want)
		}
	}
}

func TestClosest(t *testing.T) {
	keys := []string{"bind_address", "ca_bundle_path", "cert_file", "data_dir", "trust_domain"}
	for _, tt := range []struct{ word, want string }{
		{"bind_adress", "bind_address"},
		{"trust-domain", "trust_domain"},
		{"data", "data_dir"},            // cut short, one key
		{"ca_bundle", "ca_bundle_path"}, // cut short
		{"cert_file_path", "cert_file"}, // run on
		{"key_file", ""},                // three edits from cert_file: too far for eight letters
		{"x", ""},                       // too short to guess
		{"colour", ""},
	} {
		if got := Closest(tt.word, keys); got != tt.want {
			t.Errorf("Closest(%q) = %q, want %q", tt.word, got, tt.want)
		}
	}
	if got := Closest("ab_x", []string{"ab_x_one", "ab_x_two"}); got != "" {
		t.Errorf("Closest with two keys it is cut from = %q, want none", got)
	}
}
