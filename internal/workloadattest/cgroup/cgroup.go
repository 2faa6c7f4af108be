// Package cgroup reads a process's control groups (/proc/<pid>/cgroup) and
// finds in them what container runtimes and systemd put there: the
// Kubernetes pod UID, the container ID and the systemd unit.
//
// One parser covers cgroup v1 and v2, the cgroupfs and systemd cgroup
// drivers, and the containerd, CRI-O, Docker and Podman naming schemes:
//
//	/kubepods/burstable/pod<uid>/<id>                                         cgroupfs (containerd, Docker)
//	/kubepods/pod<uid>/crio-<id>                                              cgroupfs (CRI-O)
//	/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod<uid_with_underscores>.slice/cri-containerd-<id>.scope
//	.../crio-<id>.scope, .../docker-<id>.scope                                systemd driver
//	/docker/<id>, /system.slice/docker-<id>.scope, /machine.slice/libpod-<id>.scope   outside Kubernetes
//
// A container ID is 64 lower-case hex digits. The file comes from the
// kernel but is parsed as untrusted input: a malformed line is an error.
package cgroup

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// MaxFileSize bounds what Read reads; a real file is a few hundred bytes
// per hierarchy.
const MaxFileSize = 64 << 10

// Line is one line of /proc/<pid>/cgroup: "hierarchy-ID:controllers:path".
type Line struct {
	HierarchyID int      // 0 for the cgroup v2 unified hierarchy
	Controllers []string // empty for v2; "name=systemd" for systemd's v1 hierarchy
	Path        string   // relative to the reader's cgroup namespace root
}

// Parse parses the contents of a /proc/<pid>/cgroup file. Empty lines are
// skipped; any other line must have a decimal hierarchy ID, a controller
// list and an absolute path.
func Parse(data []byte) ([]Line, error) {
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("parse cgroup: %d bytes, more than %d", len(data), MaxFileSize)
	}
	var out []Line
	for n := 1; len(data) > 0; n++ {
		var raw []byte
		raw, data, _ = bytes.Cut(data, []byte{'\n'})
		if len(raw) == 0 {
			continue
		}
		id, rest, ok1 := bytes.Cut(raw, []byte{':'})
		ctl, path, ok2 := bytes.Cut(rest, []byte{':'})
		if !ok1 || !ok2 {
			return nil, fmt.Errorf("parse cgroup: line %d: want hierarchy-ID:controllers:path", n)
		}
		if len(id) == 0 || len(id) > 9 || strings.Trim(string(id), "0123456789") != "" {
			return nil, fmt.Errorf("parse cgroup: line %d: hierarchy ID %q is not a decimal number", n, id)
		}
		hid, _ := strconv.Atoi(string(id))
		if len(path) == 0 || path[0] != '/' {
			return nil, fmt.Errorf("parse cgroup: line %d: path %q is not absolute", n, path)
		}
		if bytes.IndexByte(path, 0) >= 0 {
			return nil, fmt.Errorf("parse cgroup: line %d: path holds a NUL byte", n)
		}
		l := Line{HierarchyID: hid, Path: string(path)}
		if len(ctl) > 0 {
			l.Controllers = strings.Split(string(ctl), ",")
		}
		out = append(out, l)
	}
	if len(out) == 0 {
		return nil, errors.New("parse cgroup: no cgroup lines")
	}
	return out, nil
}

// Read reads and parses procRoot/<pid>/cgroup (procRoot is normally
// "/proc").
func Read(procRoot string, pid int32) ([]Line, error) {
	f, err := os.Open(filepath.Join(procRoot, strconv.FormatInt(int64(pid), 10), "cgroup"))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", f.Name(), err)
	}
	return Parse(data)
}

// Container is what the cgroup paths say about a containerized process.
type Container struct {
	// ID is the container ID (64 lower-case hex digits); empty when the
	// process is in no container's cgroup.
	ID string
	// PodUID is the Kubernetes pod UID with dashes, as the API reports it;
	// empty outside a pod.
	PodUID string
}

// FindContainer returns the container and pod of a process from its
// cgroup lines. Every line that names a container must name the same one
// (and the same pod): differing lines are an error, since they could only
// come from a process that moved, or a forged file. A process in no
// container gets the zero Container and no error.
func FindContainer(lines []Line) (Container, error) {
	var found Container
	for _, l := range lines {
		c := fromPath(l.Path)
		if c == (Container{}) {
			continue
		}
		if found != (Container{}) && c != found {
			return Container{}, fmt.Errorf("cgroup paths disagree: container %q pod %q, then container %q pod %q",
				found.ID, found.PodUID, c.ID, c.PodUID)
		}
		found = c
	}
	return found, nil
}

// fromPath finds the container ID in the last path segment that holds one,
// and the pod UID in a segment before it.
func fromPath(path string) Container {
	segs := strings.Split(path, "/")
	for i := len(segs) - 1; i >= 0; i-- {
		id, ok := containerID(segs[i])
		if !ok {
			continue
		}
		c := Container{ID: id}
		for j := i - 1; j >= 0; j-- {
			if uid, ok := podUID(segs[j]); ok {
				c.PodUID = uid
				break
			}
		}
		return c
	}
	// A pod's own cgroup (its sandbox or a process outside any container)
	// names the pod only.
	for i := len(segs) - 1; i >= 0; i-- {
		if uid, ok := podUID(segs[i]); ok {
			return Container{PodUID: uid}
		}
	}
	return Container{}
}

// runtimePrefixes are the prefixes of systemd scopes (and CRI-O's cgroupfs
// directories) that hold a container: containerd, CRI-O, Docker, Podman.
var runtimePrefixes = []string{"cri-containerd-", "crio-", "docker-", "libpod-"}

// containerID reports whether seg names a container and returns its ID.
// CRI-O's monitor (crio-conmon-<id>) is not the container.
func containerID(seg string) (string, bool) {
	s := strings.TrimSuffix(seg, ".scope")
	for _, p := range runtimePrefixes {
		if rest, ok := strings.CutPrefix(s, p); ok {
			s = rest
			break
		}
	}
	if !isHexID(s) {
		return "", false
	}
	if s == seg || strings.HasSuffix(seg, ".scope") || strings.HasPrefix(seg, "crio-") {
		return s, true
	}
	return "", false
}

func isHexID(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// podUID reports whether seg is a pod's cgroup ("pod<uid>" for cgroupfs,
// "kubepods[-<qos>]-pod<uid_with_underscores>.slice" for systemd) and
// returns the UID with dashes.
func podUID(seg string) (string, bool) {
	var raw string
	if s, ok := strings.CutSuffix(seg, ".slice"); ok {
		i := strings.LastIndex(s, "-pod")
		if !strings.HasPrefix(s, "kubepods") || i < 0 {
			return "", false
		}
		raw = strings.ReplaceAll(s[i+len("-pod"):], "_", "-")
	} else if s, ok := strings.CutPrefix(seg, "pod"); ok {
		raw = s
	} else {
		return "", false
	}
	if !isUUID(raw) {
		return "", false
	}
	return raw, true
}

// isUUID accepts the 8-4-4-4-12 lower-case hex form Kubernetes uses.
func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
				return false
			}
		}
	}
	return true
}

// SystemdUnit returns the systemd unit of the system manager that holds the
// process: the first unit (not slice) on the path of systemd's hierarchy
// (the v1 "name=systemd" line, else the v2 unified line). The first unit,
// not the last: a user's own manager (user@<uid>.service) and services with
// Delegate=yes create cgroups of any name below their unit, so a deeper
// name proves nothing. It returns "" when the process is in no unit, and an
// error when the path is outside the reader's cgroup namespace ("/.."),
// where the unit cannot be known.
func SystemdUnit(lines []Line) (string, error) {
	path, ok := "", false
	for _, l := range lines {
		for _, c := range l.Controllers {
			if c == "name=systemd" {
				path, ok = l.Path, true
			}
		}
	}
	if !ok {
		for _, l := range lines {
			if l.HierarchyID == 0 && len(l.Controllers) == 0 {
				path, ok = l.Path, true
			}
		}
	}
	if !ok {
		return "", nil
	}
	for seg := range strings.SplitSeq(strings.TrimPrefix(path, "/"), "/") {
		switch {
		case seg == "":
			continue
		case seg == ".." || seg == ".":
			return "", fmt.Errorf("cgroup path %q is outside the agent's cgroup namespace", path)
		case strings.HasSuffix(seg, ".slice"):
			continue
		case isUnitName(seg):
			return seg, nil
		default:
			// A plain directory before any unit: not systemd's layout.
			return "", nil
		}
	}
	return "", nil
}

// unitSuffixes are the unit types that hold processes.
var unitSuffixes = []string{".service", ".scope", ".socket", ".mount", ".swap"}

func isUnitName(seg string) bool {
	for _, s := range unitSuffixes {
		if name, ok := strings.CutSuffix(seg, s); ok && name != "" {
			return true
		}
	}
	return false
}
