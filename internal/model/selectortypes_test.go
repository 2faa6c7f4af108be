package model

import (
	"encoding/hex"
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/signet-id/signet/internal/errkind"
)

func TestSelectorTypesTable(t *testing.T) {
	for name, st := range selectorTypes {
		if st.Name != name || st.Validate == nil || (st.Kind != WorkloadSelector && st.Kind != NodeSelector) {
			t.Errorf("selectorTypes[%q] = %+v: want Name %q, a Kind and a Validate", name, st, name)
		}
		if err := (Selector{Type: name, Value: "x"}).Validate(); err != nil && !strings.Contains(err.Error(), name) {
			t.Errorf("Validate(%s:x) = %q: the message should name the type", name, err)
		}
	}
	if got, want := slices.Sorted(slices.Values(unixSelectorList)), slices.Sorted(maps.Keys(unixSelectorNames)); !slices.Equal(got, want) {
		t.Errorf("unixSelectorList = %v, want the names of unixSelectorNames %v", got, want)
	}
	if _, ok := LookupSelectorType("k8s_sat"); ok {
		t.Error(`LookupSelectorType("k8s_sat") found a type that has no built-in attestor`)
	}
	for _, tc := range []struct {
		sel string
		ok  bool
	}{
		{"k8s:ns:shop", true},
		{"k8s:pod-label:app:web", true},
		{"k8s:pod-owner:ReplicaSet:web-7d9", true},
		{"k8s:namespace:shop", false},
		{"k8s:ns:", false},
		{"docker:label:com.example.team:pay", true},
		{"docker:image_id:sha256:abc", true},
		{"docker:env:FOO:bar", true},
		{"docker:image:x", false},
		{"systemd:id:backup.service", true},
		{"systemd:fragment_path:/etc/systemd/system/backup.service", true},
		{"systemd:unit:backup.service", false},
		{"unix:container:true", true},
		{"unix:container:false", false},
	} {
		s, err := ParseSelector(tc.sel)
		if err == nil {
			err = s.Validate()
		}
		if (err == nil) != tc.ok {
			t.Errorf("Validate(%q) = %v, want ok=%v", tc.sel, err, tc.ok)
		}
	}
}

func TestValidateUnixSelector(t *testing.T) {
	tests := []struct {
		value string
		ok    bool
	}{
		{"uid:0", true},
		{"uid:4294967295", true},
		{"uid:4294967296", false},
		{"uid:abc", false},
		{"uid:-1", false},
		{"uid:", false},
		{"uid:007", false},
		{"gid:1000", true},
		{"gid:", false},
		{"supplementary_gid:27", true},
		{"supplementary_gid:x", false},
		{"user:root", true},
		{"user:", false},
		{"group:", false},
		{"supplementary_group:wheel", true},
		{"path:/", true},
		{"path:/usr/bin/web (deleted)", true},
		{"path:usr/bin", false},
		{"path:/usr/bin/", false},
		{"path://usr/bin", false},
		{"path:/usr/./bin", false},
		{"sha256:" + strings.Repeat("a", 64), true},
		{"sha256:" + strings.Repeat("A", 64), false},
		{"sha256:" + strings.Repeat("a", 63), false},
		{"sha256:" + strings.Repeat("g", 64), false},
		{"pid:1", false},
		{"uid", false},
		{":1", false},
	}
	for _, tt := range tests {
		err := Selector{Type: "unix", Value: tt.value}.Validate()
		if (err == nil) != tt.ok {
			t.Errorf("Selector{unix, %q}.Validate() = %v, want ok=%v", tt.value, err, tt.ok)
		}
		if err != nil && !errkind.Is(err, errkind.InvalidArgument) {
			t.Errorf("Selector{unix, %q}.Validate() = %v, want kind InvalidArgument", tt.value, err)
		}
	}
}

// FuzzValidateUnixSelector: the unix value checks never panic, and what
// they accept is exactly what the attestor could print.
func FuzzValidateUnixSelector(f *testing.F) {
	for _, s := range []string{"uid:1000", "uid:abc", "uid:-1", "gid:", "uid:01", "user:www-data", "path:/usr/bin/x",
		"path:a/../b", "sha256:" + strings.Repeat("0f", 32), "sha256:XYZ", "supplementary_gid:4294967295", "x", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		err := Selector{Type: "unix", Value: v}.Validate()
		if err != nil {
			if len(err.Error()) > 1024 {
				t.Fatalf("Validate(unix:%q): message of %d bytes", v, len(err.Error()))
			}
			return
		}
		name, rest, _ := strings.Cut(v, ":")
		switch name {
		case "uid", "gid", "supplementary_gid":
			n, perr := strconv.ParseUint(rest, 10, 32)
			if perr != nil || strconv.FormatUint(n, 10) != rest {
				t.Fatalf("Validate(unix:%q) accepted a non-canonical id", v)
			}
		case "sha256":
			b, herr := hex.DecodeString(rest)
			if herr != nil || len(b) != 32 || hex.EncodeToString(b) != rest {
				t.Fatalf("Validate(unix:%q) accepted a bad sha256", v)
			}
		case "path":
			if !strings.HasPrefix(rest, "/") {
				t.Fatalf("Validate(unix:%q) accepted a relative path", v)
			}
		case "user", "group", "supplementary_group":
			if rest == "" {
				t.Fatalf("Validate(unix:%q) accepted an empty name", v)
			}
		default:
			t.Fatalf("Validate(unix:%q) accepted an unknown name %q", v, name)
		}
	})
}
