package model

import "testing"

func TestWorkloadMatches(t *testing.T) {
	sel := func(ss ...string) []Selector {
		var out []Selector
		for _, s := range ss {
			p, err := ParseSelector(s)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, p)
		}
		return SortSelectors(out)
	}
	host := sel("unix:uid:1000", "unix:gid:1000", "unix:path:/usr/bin/app")
	container := sel("unix:uid:1000", "unix:gid:1000", "unix:path:/usr/bin/app", "unix:container:true",
		"k8s:ns:shop", "k8s:sa:checkout", "docker:label:app:web")
	for _, tc := range []struct {
		name          string
		entry, caller []Selector
		want          bool
	}{
		{"host entry, host caller", sel("unix:uid:1000"), host, true},
		{"host entry, containerized caller", sel("unix:uid:1000"), container, false},
		{"all-unix entry, containerized caller", sel("unix:uid:1000", "unix:path:/usr/bin/app"), container, false},
		{"entry opts in to containers", sel("unix:uid:1000", "unix:container:true"), container, true},
		{"container entry, host caller", sel("unix:uid:1000", "unix:container:true"), host, false},
		{"k8s entry, containerized caller", sel("k8s:ns:shop", "k8s:sa:checkout"), container, true},
		{"k8s and unix entry, containerized caller", sel("k8s:ns:shop", "unix:uid:1000"), container, true},
		{"docker entry, containerized caller", sel("docker:label:app:web"), container, true},
		{"k8s entry, host caller", sel("k8s:ns:shop"), host, false},
		{"selector missing", sel("unix:uid:1001"), host, false},
		{"empty entry, containerized caller", nil, container, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := WorkloadMatches(tc.entry, tc.caller); got != tc.want {
				t.Errorf("WorkloadMatches(%v, %v) = %v, want %v", tc.entry, tc.caller, got, tc.want)
			}
		})
	}
}

func BenchmarkWorkloadMatches(b *testing.B) {
	entry := SortSelectors([]Selector{{Type: "k8s", Value: "ns:shop"}, {Type: "k8s", Value: "sa:checkout"}})
	caller := SortSelectors([]Selector{{Type: "k8s", Value: "ns:shop"}, {Type: "k8s", Value: "sa:checkout"},
		ContainerSelector, {Type: "unix", Value: "uid:0"}})
	b.ReportAllocs()
	for b.Loop() {
		if !WorkloadMatches(entry, caller) {
			b.Fatal("no match")
		}
	}
}
