package risk

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestScore(t *testing.T) {
	now := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	ago := func(d int) time.Time { return now.Add(-time.Duration(d) * day) }
	tests := map[string]struct {
		in      Input
		want    int
		factors []string // names, in order
	}{
		"fresh token, dev, one place": {
			in:   Input{Kind: "token", Severity: "medium", Environment: "development", Since: ago(1), Hosts: 1, Places: 1, Now: now},
			want: 25, factors: []string{"kind"},
		},
		"production counts most": {
			in:   Input{Kind: "token", Severity: "medium", Environment: "production", Since: ago(1), Hosts: 1, Places: 1, Now: now},
			want: 50, factors: []string{"kind", "environment"},
		},
		"unlabelled counts as maybe production": {
			in:   Input{Kind: "token", Environment: "unknown", Hosts: 1, Places: 1, Now: now},
			want: 35, factors: []string{"kind", "environment"},
		},
		"old key in long git history on several hosts": {
			in: Input{Kind: "private-key", Severity: "high", Environment: "production", Since: ago(400), Hosts: 3, Places: 4,
				History: true, HistorySince: ago(400), Now: now},
			want: 100, factors: []string{"kind", "severity", "environment", "age", "hosts", "places", "git_history"},
		},
		"recent git history": {
			in: Input{Kind: "api-key", Environment: "staging", Since: ago(40), Hosts: 1, Places: 1, History: true,
				HistorySince: ago(40), Now: now},
			want: 45, factors: []string{"kind", "environment", "age", "git_history"},
		},
		"age steps": {
			in:   Input{Kind: "password", Environment: "test", Since: ago(100), Hosts: 1, Places: 1, Now: now},
			want: 35, factors: []string{"kind", "age"},
		},
		"encrypted key ranks below plain key": {
			in:   Input{Kind: "encrypted-private-key", Severity: "low", Environment: "development", Hosts: 1, Places: 1, Now: now},
			want: 5, factors: []string{"kind", "severity"},
		},
		"unknown kind is middling": {
			in:   Input{Kind: "quantum-token", Environment: "development", Hosts: 1, Places: 1, Now: now},
			want: 20, factors: []string{"kind"},
		},
		"empty kind": {
			in:   Input{Environment: "development", Now: now},
			want: 20, factors: []string{"kind"},
		},
		"places and hosts cap": {
			in:   Input{Kind: "token", Environment: "development", Hosts: 50, Places: 500, Now: now},
			want: 45, factors: []string{"kind", "hosts", "places"},
		},
		"never below zero": {
			in:   Input{Kind: "encrypted-private-key", Severity: "low", Environment: "development", Now: now},
			want: 5, factors: []string{"kind", "severity"},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, fs := Score(tc.in)
			var names []string
			sum := 0
			for _, f := range fs {
				names = append(names, f.Name)
				sum += f.Points
				if f.Reason == "" {
					t.Errorf("factor %s has no reason", f.Name)
				}
			}
			if got != tc.want {
				t.Errorf("Score(%+v) = %d, want %d (factors %+v)", tc.in, got, tc.want, fs)
			}
			if d := cmp.Diff(tc.factors, names); d != "" {
				t.Errorf("factors (-want +got):\n%s", d)
			}
			if got < Max && sum != got {
				t.Errorf("factors sum to %d, score %d", sum, got)
			}
		})
	}
}

func TestKindOrder(t *testing.T) {
	if KindPoints("encrypted-private-key") >= KindPoints("private-key") {
		t.Errorf("encrypted-private-key %d should score below private-key %d", KindPoints("encrypted-private-key"), KindPoints("private-key"))
	}
	if KindPoints("no-such-kind") >= KindPoints("cloud-credential") || KindPoints("no-such-kind") <= KindPoints("encrypted-private-key") {
		t.Errorf("unknown kind %d should rank between encrypted keys and cloud credentials", KindPoints("no-such-kind"))
	}
}

func TestNormalizeEnvironment(t *testing.T) {
	for in, want := range map[string]string{"": "unknown", " Prod ": "production", "K8S": "kubernetes", "edge": "edge", "stg": "staging"} {
		if got := NormalizeEnvironment(in); got != want {
			t.Errorf("NormalizeEnvironment(%q) = %q, want %q", in, got, want)
		}
	}
}
