// Package deploy_test checks the packaging the repository ships: the
// Dockerfile, the systemd units, and that the release binary is static
// enough to run from an empty root.
package deploy_test

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	line int
	cmd  string // upper-cased: FROM, RUN, USER…
	args string
}

// parseDockerfile splits a Dockerfile into instructions: comments and
// blank lines dropped, backslash continuations joined. (No heredocs or
// escape directive: the shipped Dockerfile uses neither, and the test
// fails if it starts to.)
func parseDockerfile(t *testing.T, path string) []instruction {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []instruction
	var cur strings.Builder
	start := 0
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if strings.Contains(line, "<<") {
			t.Fatalf("%s:%d: heredoc: extend parseDockerfile before using one", path, n)
		}
		if cur.Len() == 0 {
			start = n
		}
		cont := strings.HasSuffix(line, "\\")
		cur.WriteString(strings.TrimSuffix(line, "\\"))
		cur.WriteString(" ")
		if cont {
			continue
		}
		cmd, args, _ := strings.Cut(strings.TrimSpace(cur.String()), " ")
		out = append(out, instruction{line: start, cmd: strings.ToUpper(cmd), args: strings.TrimSpace(args)})
		cur.Reset()
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// pinnedImage matches an image reference pinned to a digest or to a tag
// that carries a version number (not latest, not a bare distribution name).
var pinnedImage = regexp.MustCompile(`^[a-z0-9./_-]+(@sha256:[0-9a-f]{64}|:[A-Za-z0-9._-]*[0-9][A-Za-z0-9._-]*|:[A-Za-z0-9._-]+@sha256:[0-9a-f]{64})$`)

func TestDockerfile(t *testing.T) {
	ins := parseDockerfile(t, "../Dockerfile")
	var stages []string // base image per stage
	var finalUser, finalEntrypoint string
	var buildRun string
	for _, in := range ins {
		switch in.cmd {
		case "FROM":
			image := strings.Fields(in.args)[0]
			stages = append(stages, image)
			finalUser, finalEntrypoint = "", ""
			if image == "scratch" {
				continue
			}
			if !pinnedImage.MatchString(image) {
				t.Errorf("Dockerfile:%d: FROM %s: pin the base image to a version tag or digest", in.line, image)
			}
		case "USER":
			finalUser = in.args
		case "ENTRYPOINT":
			finalEntrypoint = in.args
		case "RUN":
			if strings.Contains(in.args, "go build") {
				buildRun = in.args
			}
		case "ADD":
			t.Errorf("Dockerfile:%d: ADD: use COPY (ADD fetches URLs and unpacks archives)", in.line)
		}
	}
	if len(stages) < 2 {
		t.Fatalf("Dockerfile has %d stage(s), want a multi-stage build", len(stages))
	}
	if last := stages[len(stages)-1]; last != "scratch" && !strings.Contains(last, "distroless") {
		t.Errorf("final stage FROM %s: want scratch or a distroless base (no shell)", last)
	}
	uid, _, _ := strings.Cut(finalUser, ":")
	if uid == "" || uid == "0" || uid == "root" || !regexp.MustCompile(`^[0-9]+$`).MatchString(uid) {
		t.Errorf("final stage USER %q: want a numeric non-root uid (Kubernetes runAsNonRoot checks it)", finalUser)
	}
	if !strings.HasPrefix(finalEntrypoint, "[") {
		t.Errorf("ENTRYPOINT %s: want the exec form: the image has no shell", finalEntrypoint)
	}
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath", "./cmd/signet ", "./cmd/signet-agent"} {
		if !strings.Contains(buildRun, want) {
			t.Errorf("the go build RUN lacks %s: %s", want, buildRun)
		}
	}
	// The passwd entry the final stage copies names the USER's uid.
	if !strings.Contains(readFile(t, "../Dockerfile"), "signet:x:"+uid+":") {
		t.Errorf("no /etc/passwd entry for uid %s", uid)
	}
}

// TestDockerfileLinterCatches: the checks above fail on a bad Dockerfile.
func TestDockerfileLinterCatches(t *testing.T) {
	for _, bad := range []string{"golang", "golang:latest", "golang:bookworm"} {
		if pinnedImage.MatchString(bad) {
			t.Errorf("base image %q passes as pinned", bad)
		}
	}
	for _, good := range []string{"golang:1.26.8-bookworm", "gcr.io/distroless/static:nonroot@sha256:" + strings.Repeat("a", 64)} {
		if !pinnedImage.MatchString(good) {
			t.Errorf("base image %q fails as unpinned", good)
		}
	}
}

// TestDockerBuild builds and runs the image when a container builder is
// available. This machine has the docker CLI but no daemon, so CI on it
// relies on TestDockerfile and TestStaticBinaryEmptyRoot instead.
func TestDockerBuild(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	if _, err := exec.LookPath("docker"); err != nil {
		t.Skip("no docker CLI")
	}
	if out, err := exec.Command("docker", "info").CombinedOutput(); err != nil {
		t.Skipf("no container builder: docker info: %v: %s", err, lastLine(out))
	}
	tag := "signet-test:packaging"
	if out, err := exec.Command("docker", "build", "-t", tag, "..").CombinedOutput(); err != nil {
		t.Fatalf("docker build: %v\n%s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("docker", "rmi", tag).Run() })
	out, err := exec.Command("docker", "run", "--rm", tag, "version").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "signet ") {
		t.Fatalf("docker run %s version = %v\n%s", tag, err, out)
	}
	out, err = exec.Command("docker", "run", "--rm", "--entrypoint", "/bin/sh", tag, "-c", "true").CombinedOutput()
	if err == nil {
		t.Errorf("the image has a shell:\n%s", out)
	}
}

// TestStaticBinaryEmptyRoot builds signet and signet-agent as the
// Dockerfile and make release do and runs each one's `version` chrooted
// into a directory holding nothing but the binary: no libc, no /etc, no
// /proc. This is what the FROM scratch image relies on.
func TestStaticBinaryEmptyRoot(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	chroot, err := exec.LookPath("chroot")
	if err != nil {
		t.Skip("no chroot")
	}
	for _, name := range []string{"signet", "signet-agent"} {
		t.Run(name, func(t *testing.T) {
			root := t.TempDir()
			bin := filepath.Join(root, name)
			build := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w -X main.version=emptyroot", "-o", bin, "../cmd/"+name)
			build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=-buildvcs=false")
			if out, err := build.CombinedOutput(); err != nil {
				t.Fatalf("go build: %v\n%s", err, out)
			}
			entries, _ := os.ReadDir(root)
			if len(entries) != 1 {
				t.Fatalf("the root holds %d entries, want only the binary", len(entries))
			}
			var cmd *exec.Cmd
			if os.Geteuid() == 0 {
				cmd = exec.Command(chroot, root, "/"+name, "version")
			} else if unshare, err := exec.LookPath("unshare"); err == nil {
				// An unprivileged user namespace allows chroot without root.
				cmd = exec.Command(unshare, "--user", "--map-root-user", chroot, root, "/"+name, "version")
			} else {
				t.Skip("not root and no unshare: cannot chroot")
			}
			out, err := cmd.CombinedOutput()
			if err != nil {
				if strings.Contains(string(out), "Operation not permitted") {
					t.Skipf("chroot refused here: %s", lastLine(out))
				}
				t.Fatalf("%s: %v\n%s", strings.Join(cmd.Args, " "), err, out)
			}
			if !strings.HasPrefix(string(out), name+" emptyroot\n") {
				t.Fatalf("%s version in an empty root = %q", name, out)
			}
		})
	}
}

// units are the shipped systemd units and what each must contain.
var units = map[string][]string{
	"signet-server.service": {"NoNewPrivileges=yes", "ProtectSystem=strict", "PrivateTmp=yes", "ProtectHome=yes",
		"ReadWritePaths=/var/lib/signet/server", "CapabilityBoundingSet=", "RestrictAddressFamilies=", "User=signet",
		"ProtectProc=invisible"},
	"signet-agent.service": {"NoNewPrivileges=yes", "ProtectSystem=strict", "PrivateTmp=yes", "ProtectHome=",
		"ReadWritePaths=/var/lib/signet/agent /run/signet", "RuntimeDirectory=signet", "CapabilityBoundingSet=",
		"RestrictAddressFamilies="},
}

func TestSystemdUnits(t *testing.T) {
	for name, want := range units {
		text := readFile(t, filepath.Join("systemd", name))
		for _, w := range want {
			if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(w)).MatchString(text) {
				t.Errorf("%s lacks %s", name, w)
			}
		}
	}
	// The agent reads /proc of other processes for workload attestation.
	agent := readFile(t, "systemd/signet-agent.service")
	for _, banned := range []string{"ProtectProc=invisible", "ProcSubset=pid", "PrivateDevices=yes"} {
		if regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(banned)).MatchString(agent) {
			t.Errorf("signet-agent.service sets %s: workload (and TPM) attestation needs /proc and /dev/tpmrm0", banned)
		}
	}
}

// TestSystemdAnalyzeVerify runs systemd-analyze verify over the units,
// with ExecStart pointed at a binary that exists here.
func TestSystemdAnalyzeVerify(t *testing.T) {
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze is not installed (Debian: systemd)")
	}
	dir := t.TempDir()
	var paths []string
	for name := range units {
		text := readFile(t, filepath.Join("systemd", name))
		text = strings.ReplaceAll(strings.ReplaceAll(text, "/usr/local/bin/signet-agent", "/bin/true"), "/usr/local/bin/signet", "/bin/true")
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	out, err := exec.Command(sa, append([]string{"verify", "--man=no"}, paths...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
	for _, l := range strings.Split(string(out), "\n") {
		for name := range units {
			if strings.Contains(l, name) {
				t.Errorf("systemd-analyze verify: %s", l)
			}
		}
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func lastLine(b []byte) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return lines[len(lines)-1]
}
