package model

import "testing"

// FuzzParseSelector: parsing never panics, and whatever it accepts prints
// back to the same string and validates.
func FuzzParseSelector(f *testing.F) {
	for _, s := range []string{"unix:uid:1000", "k8s:ns:default", "a:b", ":", "unix:", ":x", "UNIX:uid:1", "x: y", "t:\x00", "unix:uid:abc", "unix:gid:"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		sel, err := ParseSelector(s)
		if err != nil {
			return
		}
		if sel.String() != s {
			t.Fatalf("ParseSelector(%q).String() = %q", s, sel.String())
		}
		if err := sel.Validate(); err != nil {
			t.Fatalf("ParseSelector(%q) accepted an invalid selector: %v", s, err)
		}
	})
}
