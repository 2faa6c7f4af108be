package cgroup

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const (
	fixtureID  = "9be9a4d6cd4a9d1b3c1f0a5e6f7b8c9d0e1f2a3b4c5d6e7f8091a2b3c4d5e6f7"
	fixturePod = "2c48913c-b29f-11e7-9350-020968147796"
)

func TestFixtures(t *testing.T) {
	for _, tc := range []struct {
		file      string
		container Container
		unit      string
		unitErr   bool
	}{
		{"v1-cgroupfs-containerd.txt", Container{ID: fixtureID, PodUID: fixturePod}, "", false},
		{"v1-systemd-containerd.txt", Container{ID: fixtureID, PodUID: fixturePod}, "cri-containerd-" + fixtureID + ".scope", false},
		{"v2-systemd-containerd.txt", Container{ID: fixtureID, PodUID: fixturePod}, "cri-containerd-" + fixtureID + ".scope", false},
		{"v2-cgroupfs-containerd.txt", Container{ID: fixtureID, PodUID: fixturePod}, "", false},
		{"v2-systemd-crio.txt", Container{ID: fixtureID, PodUID: fixturePod}, "crio-" + fixtureID + ".scope", false},
		{"v1-cgroupfs-crio.txt", Container{ID: fixtureID, PodUID: fixturePod}, "", false},
		{"v2-systemd-dockershim.txt", Container{ID: fixtureID, PodUID: fixturePod}, "docker-" + fixtureID + ".scope", false},
		{"v1-cgroupfs-dockershim.txt", Container{ID: fixtureID, PodUID: fixturePod}, "", false},
		{"v1-cgroupfs-docker.txt", Container{ID: fixtureID}, "", false},
		{"v2-systemd-docker.txt", Container{ID: fixtureID}, "docker-" + fixtureID + ".scope", false},
		{"v2-systemd-podman.txt", Container{ID: fixtureID}, "user@1000.service", false},
		{"v2-crio-conmon.txt", Container{PodUID: fixturePod}, "crio-conmon-" + fixtureID + ".scope", false},
		{"v2-host-service.txt", Container{}, "sshd.service", false},
		{"v1-host-service.txt", Container{}, "cron.service", false},
		{"v2-user-manager.txt", Container{}, "user@1000.service", false},
		{"v2-outside-cgroupns.txt", Container{ID: fixtureID, PodUID: fixturePod}, "", true},
	} {
		t.Run(tc.file, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join("testdata", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			lines, err := Parse(data)
			if err != nil {
				t.Fatalf("Parse = %v", err)
			}
			c, err := FindContainer(lines)
			if err != nil || c != tc.container {
				t.Errorf("FindContainer = %+v, %v, want %+v", c, err, tc.container)
			}
			unit, err := SystemdUnit(lines)
			if (err != nil) != tc.unitErr || unit != tc.unit {
				t.Errorf("SystemdUnit = %q, %v, want %q (error: %v)", unit, err, tc.unit, tc.unitErr)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", "no cgroup lines"},
		{"\n\n", "no cgroup lines"},
		{"0:/", "want hierarchy-ID:controllers:path"},
		{"x::/", "not a decimal number"},
		{"-1::/", "not a decimal number"},
		{"99999999999::/", "not a decimal number"},
		{"0::relative", "not absolute"},
		{"0::", "not absolute"},
		{"0::/a\x00b", "NUL"},
		{strings.Repeat("0::/\n", MaxFileSize), "more than"},
	} {
		if _, err := Parse([]byte(tc.in)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Parse(%.40q) = %v, want an error containing %q", tc.in, err, tc.want)
		}
	}
}

func TestFindContainerDisagree(t *testing.T) {
	other := strings.Repeat("a", 64)
	lines, err := Parse([]byte("2:memory:/docker/" + fixtureID + "\n1:name=systemd:/docker/" + other + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := FindContainer(lines); err == nil || !strings.Contains(err.Error(), "disagree") {
		t.Errorf("FindContainer(two containers) = %v, want a disagreement error", err)
	}
}

func TestNotAContainer(t *testing.T) {
	for _, path := range []string{
		"/docker/" + strings.ToUpper(fixtureID),
		"/docker/" + fixtureID[:63],
		"/system.slice/docker-" + fixtureID, // a scope without its suffix
		"/kubepods/burstable/pod2C48913C-B29F-11E7-9350-020968147796",
		"/kubepods/burstable/pod" + strings.ReplaceAll(fixturePod, "-", "_"),
		"/foo.slice/foo-pod" + fixturePod + ".slice",
	} {
		lines, err := Parse([]byte("0::" + path))
		if err != nil {
			t.Fatal(err)
		}
		if c, err := FindContainer(lines); err != nil || c != (Container{}) {
			t.Errorf("FindContainer(%q) = %+v, %v, want none", path, c, err)
		}
	}
}

func TestReadSelf(t *testing.T) {
	lines, err := Read("/proc", int32(os.Getpid()))
	if err != nil {
		t.Fatalf("Read(self) = %v", err)
	}
	if len(lines) == 0 {
		t.Fatal("Read(self): no lines")
	}
	if _, err := Read(t.TempDir(), 1); !os.IsNotExist(err) {
		t.Errorf("Read(missing) = %v, want not-exist", err)
	}
}

func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "*.txt"))
	for _, p := range files {
		data, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte("0::/kubepods/podx/crio-\n1:a,b:/../"))
	f.Fuzz(func(t *testing.T, data []byte) {
		lines, err := Parse(data)
		if err != nil {
			return
		}
		c, err := FindContainer(lines)
		if err == nil && c.ID != "" && !isHexID(c.ID) {
			t.Errorf("FindContainer returned container ID %q", c.ID)
		}
		if c.PodUID != "" && !isUUID(c.PodUID) {
			t.Errorf("FindContainer returned pod UID %q", c.PodUID)
		}
		unit, err := SystemdUnit(lines)
		if err == nil && unit != "" && (strings.Contains(unit, "/") || !isUnitName(unit)) {
			t.Errorf("SystemdUnit returned %q", unit)
		}
	})
}
