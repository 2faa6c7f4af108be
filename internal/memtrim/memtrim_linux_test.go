//go:build linux

package memtrim

import (
	"errors"
	"os"
	"strings"
	"testing"
)

func TestExecutableRegions(t *testing.T) {
	maps := strings.Join([]string{
		"00400000-00d27000 r-xp 00000000 fe:00 9977873                            /usr/bin/signet-agent",
		"00d27000-018a2000 r--p 00927000 fe:00 9977873                            /usr/bin/signet-agent",
		"018a2000-0193e000 rw-p 014a2000 fe:00 9977873                            /usr/bin/signet-agent",
		"0193e000-03985000 rw-p 00000000 00:00 0 ",
		"7f3ac5962000-7f3ac5ab8000 r-xp 00026000 fe:00 326269                     /usr/lib/x86_64-linux-gnu/libc.so.6",
		"7f3ac5ab8000-7f3ac5b0b000 r--p 0017c000 fe:01 9977873                    /other/device/same/inode",
		"7ffd1c3f1000-7ffd1c3f3000 r-xp 00000000 00:00 0                          [vdso]",
	}, "\n") + "\n"
	got, err := executableRegions([]byte(maps), 0xfe, 0, 9977873)
	if err != nil {
		t.Fatal(err)
	}
	want := []region{{0x400000, 0xd27000}, {0xd27000, 0x18a2000}}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("regions = %#v, want text and read-only data only %#v", got, want)
	}
}

func TestExecutableRegionsRejectsMalformedLines(t *testing.T) {
	for _, maps := range []string{
		"00400000-00d27000 r-xp 00000000\n",
		"00400000 r-xp 00000000 fe:00 1 /x\n",
		"00d27000-00400000 r-xp 00000000 fe:00 1 /x\n",
		"0040zz00-00d27000 r-xp 00000000 fe:00 1 /x\n",
	} {
		if _, err := executableRegions([]byte(maps), 0xfe, 0, 1); err == nil || !strings.Contains(err.Error(), "line 1") {
			t.Errorf("%q: err = %v, want one naming line 1", maps, err)
		}
	}
}

// TestReleasePagesOutTheExecutable runs Release in the test binary, whose
// text start-up has touched: afterwards less of the file is resident.
func TestReleasePagesOutTheExecutable(t *testing.T) {
	fi, err := os.Stat("/proc/self/exe")
	if err != nil {
		t.Skipf("no /proc/self/exe: %v", err)
	}
	r, err := Release()
	if errors.Is(err, ErrUnsupported) {
		t.Skipf("kernel cannot page out: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	if r.Advised == 0 || r.Advised > fi.Size()+1<<20 {
		t.Errorf("advised %d bytes of a %d-byte executable", r.Advised, fi.Size())
	}
	if r.Before.File == 0 || r.After.File >= r.Before.File {
		t.Errorf("RssFile %d kB before, %d kB after: want fewer file pages resident", r.Before.File, r.After.File)
	}
	t.Logf("advised %d kB; RSS %+v → %+v kB in %v", r.Advised>>10, r.Before, r.After, r.Took)
}
