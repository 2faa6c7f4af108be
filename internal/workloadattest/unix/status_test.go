package unix

import (
	"bytes"
	"os"
	"slices"
	"strconv"
	"testing"
)

const sampleStatus = `Name:	bash
Umask:	0022
State:	S (sleeping)
Tgid:	4242
Pid:	4242
Uid:	1000	1000	1000	1000
Gid:	1000	1000	1000	1000
FDSize:	256
Groups:	4 24 27 1000 
NStgid:	4242
`

func TestParseStatus(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    procStatus
		wantErr bool
	}{
		{"sample", sampleStatus, procStatus{State: 'S', Groups: []uint32{4, 24, 27, 1000}}, false},
		{"no groups", "State:\tR (running)\nGroups:\t\n", procStatus{State: 'R', Groups: []uint32{}}, false},
		{"zombie, no newline at end", "State:\tZ (zombie)\nGroups:\t0", procStatus{State: 'Z', Groups: []uint32{0}}, false},
		{"max gid", "State:\tS\nGroups:\t4294967295\n", procStatus{State: 'S', Groups: []uint32{4294967295}}, false},
		{"gid overflow", "State:\tS\nGroups:\t4294967296\n", procStatus{}, true},
		{"negative gid", "State:\tS\nGroups:\t-1\n", procStatus{}, true},
		{"signed gid", "State:\tS\nGroups:\t+1\n", procStatus{}, true},
		{"hex gid", "State:\tS\nGroups:\t0x10\n", procStatus{}, true},
		{"underscore gid", "State:\tS\nGroups:\t1_0\n", procStatus{}, true},
		{"missing groups", "State:\tS\n", procStatus{}, true},
		{"missing state", "Groups:\t1\n", procStatus{}, true},
		{"empty state", "State:\t\nGroups:\t1\n", procStatus{}, true},
		{"lower-case state", "State:\ts\nGroups:\t1\n", procStatus{}, true},
		{"duplicate groups", "State:\tS\nGroups:\t1\nGroups:\t0\n", procStatus{}, true},
		{"duplicate state", "State:\tS\nState:\tZ\nGroups:\t1\n", procStatus{}, true},
		{"empty", "", procStatus{}, true},
		{"nested pid namespace", "State:\tS\nGroups:\t1\nNSpid:\t4242\t1\n", procStatus{State: 'S', Groups: []uint32{1}, NSpidDepth: 2}, false},
		{"host pid namespace", "State:\tS\nGroups:\t1\nNSpid:\t4242\n", procStatus{State: 'S', Groups: []uint32{1}, NSpidDepth: 1}, false},
		{"empty NSpid", "State:\tS\nGroups:\t1\nNSpid:\t\n", procStatus{}, true},
		{"bad NSpid", "State:\tS\nGroups:\t1\nNSpid:\t12 x\n", procStatus{}, true},
		{"signed NSpid", "State:\tS\nGroups:\t1\nNSpid:\t+12\n", procStatus{}, true},
		{"duplicate NSpid", "State:\tS\nGroups:\t1\nNSpid:\t1\nNSpid:\t1\n", procStatus{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseStatus([]byte(tt.in))
			if (err != nil) != tt.wantErr {
				t.Fatalf("parseStatus(%q) error = %v, wantErr %v", tt.in, err, tt.wantErr)
			}
			if err == nil && (got.State != tt.want.State || !slices.Equal(got.Groups, tt.want.Groups) || got.NSpidDepth != tt.want.NSpidDepth) {
				t.Errorf("parseStatus(%q) = %+v, want %+v", tt.in, got, tt.want)
			}
		})
	}
}

func TestParseStatusSelf(t *testing.T) {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Skip("no /proc:", err)
	}
	st, err := parseStatus(data)
	if err != nil {
		t.Fatalf("parseStatus(/proc/self/status) = %v", err)
	}
	want, err := os.Getgroups()
	if err != nil {
		t.Fatal(err)
	}
	var got []int
	for _, g := range st.Groups {
		got = append(got, int(g))
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("parseStatus(/proc/self/status).Groups = %v, want %v", got, want)
	}
}

// FuzzParseStatus checks that parseStatus never panics and that what it
// accepts is consistent with its input. The seed corpus is in
// testdata/fuzz/FuzzParseStatus.
func FuzzParseStatus(f *testing.F) {
	f.Add([]byte(sampleStatus))
	f.Add([]byte("State:\tZ (zombie)\nGroups:\t\n"))
	if data, err := os.ReadFile("/proc/self/status"); err == nil {
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		st, err := parseStatus(data)
		if err != nil {
			return
		}
		if st.State < 'A' || st.State > 'Z' {
			t.Errorf("State = %q, want an upper-case letter", st.State)
		}
		if len(st.Groups) > maxGroups {
			t.Errorf("%d groups accepted, more than %d", len(st.Groups), maxGroups)
		}
		if !bytes.Contains(data, []byte("State:")) || !bytes.Contains(data, []byte("Groups:")) {
			t.Errorf("accepted input without State or Groups: %q", data)
		}
		for _, g := range st.Groups {
			if !bytes.Contains(data, []byte(strconv.FormatUint(uint64(g), 10))) {
				t.Errorf("group %d not in input %q", g, data)
			}
		}
	})
}
