//go:build linux

package systemd_test

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"
	"github.com/google/go-cmp/cmp"

	"github.com/signet-id/signet/internal/model"
	"github.com/signet-id/signet/internal/workloadattest/cgroup"
	"github.com/signet-id/signet/internal/workloadattest/systemd"
	"github.com/signet-id/signet/internal/workloadattest/workloadattesttest"
)

func newAttestor(t *testing.T, cgroupFile string) *systemd.Attestor {
	t.Helper()
	a, err := systemd.New(systemd.Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Close() })
	if cgroupFile != "" {
		root := t.TempDir()
		p := filepath.Join(root, strconv.Itoa(os.Getpid()), "cgroup")
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(cgroupFile), 0o644); err != nil {
			t.Fatal(err)
		}
		systemd.SetProcRoot(a, root)
	}
	// No system bus unless a test provides one.
	systemd.SetBus(a, "unix:path="+filepath.Join(t.TempDir(), "no-bus"))
	return a
}

func values(sels []model.Selector) []string {
	var out []string
	for _, s := range sels {
		out = append(out, s.String())
	}
	return out
}

func TestAttestFromCgroupFixtures(t *testing.T) {
	for _, tc := range []struct {
		name, cgroup string
		want         []string
	}{
		{"v2 service", "0::/system.slice/backup.service\n", []string{"systemd:id:backup.service"}},
		{"v1 hybrid", "4:memory:/system.slice/cron.service\n1:name=systemd:/system.slice/backup.service\n0::/\n", []string{"systemd:id:backup.service"}},
		{"user manager's units are the user's", "0::/user.slice/user-1000.slice/user@1000.service/app.slice/backup.service\n", []string{"systemd:id:user@1000.service"}},
		{"delegated subtree", "0::/system.slice/ci-runner.service/job-7/backup.service\n", []string{"systemd:id:ci-runner.service"}},
		{"login session", "0::/user.slice/user-1000.slice/session-4.scope\n", []string{"systemd:id:session-4.scope"}},
		{"root slice only", "0::/\n", nil},
		{"outside the cgroup namespace", "0::/../../system.slice/backup.service\n", nil},
		{"not systemd's layout", "0::/docker/" + strings.Repeat("a", 64) + "\n", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sels, err := newAttestor(t, tc.cgroup).Attest(context.Background(), workloadattesttest.SelfPeer(t))
			if err != nil {
				t.Fatalf("Attest() = %v", err)
			}
			if diff := cmp.Diff(tc.want, values(sels)); diff != "" {
				t.Errorf("Attest() (-want +got):\n%s", diff)
			}
		})
	}
}

// TestAttestRealCgroup attests this process from its real cgroup, when the
// test runs under systemd.
func TestAttestRealCgroup(t *testing.T) {
	if _, err := os.Stat("/run/systemd/system"); err != nil {
		t.Skip("not running under systemd (no /run/systemd/system); the fixtures above cover the cgroup layouts")
	}
	lines, err := cgroup.Read("/proc", int32(os.Getpid()))
	if err != nil {
		t.Fatal(err)
	}
	unit, err := cgroup.SystemdUnit(lines)
	if err != nil || unit == "" {
		t.Skipf("this process is in no systemd unit visible here (%v)", err)
	}
	sels, err := newAttestor(t, "").Attest(context.Background(), workloadattesttest.SelfPeer(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(sels) == 0 || sels[0].Value != "id:"+unit {
		t.Errorf("Attest(self) = %v, want systemd:id:%s", values(sels), unit)
	}
}

// fakeSystemd answers the two calls the attestor makes of
// org.freedesktop.systemd1.
type fakeSystemd struct{ units map[string]string } // unit → fragment path

func (f *fakeSystemd) GetUnit(name string) (dbus.ObjectPath, *dbus.Error) {
	if _, ok := f.units[name]; !ok {
		return "", dbus.NewError("org.freedesktop.systemd1.NoSuchUnit", []any{"Unit " + name + " not loaded."})
	}
	return dbus.ObjectPath("/org/freedesktop/systemd1/unit/" + strings.NewReplacer(".", "_2e", "-", "_2d", "@", "_40").Replace(name)), nil
}

type unitProps struct{ fragment string }

func (u unitProps) Get(iface, prop string) (dbus.Variant, *dbus.Error) {
	if iface != "org.freedesktop.systemd1.Unit" || prop != "FragmentPath" {
		return dbus.Variant{}, dbus.NewError("org.freedesktop.DBus.Error.UnknownProperty", []any{prop})
	}
	return dbus.MakeVariant(u.fragment), nil
}

// startBus runs a private dbus-daemon and returns its address.
func startBus(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("dbus-daemon")
	if err != nil {
		t.Skip("dbus-daemon is not installed; .ci/run installs it")
	}
	dir := t.TempDir()
	conf := filepath.Join(dir, "bus.conf")
	err = os.WriteFile(conf, []byte(`<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>custom</type>
  <listen>unix:path=`+filepath.Join(dir, "bus.sock")+`</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
  </policy>
</busconfig>
`), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--config-file="+conf, "--nofork", "--print-address=1", "--nopidfile")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	addr, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("dbus-daemon printed no address: %v", err)
	}
	return strings.TrimSpace(addr)
}

// TestAttestFragmentPathOverDBus serves org.freedesktop.systemd1 on a
// private bus with the real D-Bus protocol and checks fragment_path.
func TestAttestFragmentPathOverDBus(t *testing.T) {
	addr := startBus(t)
	conn, err := dbus.Connect(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	f := &fakeSystemd{units: map[string]string{"backup.service": "/etc/systemd/system/backup.service", "session-4.scope": ""}}
	if err := conn.Export(f, "/org/freedesktop/systemd1", "org.freedesktop.systemd1.Manager"); err != nil {
		t.Fatal(err)
	}
	for name, frag := range f.units {
		path, _ := f.GetUnit(name)
		if err := conn.Export(unitProps{frag}, path, "org.freedesktop.DBus.Properties"); err != nil {
			t.Fatal(err)
		}
	}
	if reply, err := conn.RequestName("org.freedesktop.systemd1", dbus.NameFlagDoNotQueue); err != nil || reply != dbus.RequestNameReplyPrimaryOwner {
		t.Fatalf("RequestName = %v, %v", reply, err)
	}

	for _, tc := range []struct {
		cgroup string
		want   []string
	}{
		{"0::/system.slice/backup.service\n", []string{"systemd:id:backup.service", "systemd:fragment_path:/etc/systemd/system/backup.service"}},
		{"0::/user.slice/user-1000.slice/session-4.scope\n", []string{"systemd:id:session-4.scope"}}, // transient: no unit file
		{"0::/system.slice/unknown.service\n", []string{"systemd:id:unknown.service"}},
	} {
		a := newAttestor(t, tc.cgroup)
		systemd.SetBus(a, addr)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		sels, err := a.Attest(ctx, workloadattesttest.SelfPeer(t))
		cancel()
		if err != nil {
			t.Fatalf("Attest() = %v", err)
		}
		if diff := cmp.Diff(tc.want, values(sels)); diff != "" {
			t.Errorf("Attest(cgroup %q) (-want +got):\n%s", tc.cgroup, diff)
		}
	}
}
