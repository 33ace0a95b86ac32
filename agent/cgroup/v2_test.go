package cgroup

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/loomhpc/loom/internal/harness"
)

// mountV2 mounts a cgroup2 file system of the test's own at a temporary
// directory, unmounted when the test ends. On a hybrid node (v1
// controllers) it offers few controllers or none, but cgroup.procs,
// cgroup.kill, cgroup.freeze and the eBPF device filter work in it.
func mountV2(t *testing.T) string {
	t.Helper()
	harness.Require(t, "root", os.Geteuid() == 0)
	dir := t.TempDir()
	err := unix.Mount("none", dir, "cgroup2", 0, "")
	harness.Require(t, "a cgroup2 file system to mount ("+errString(err)+")", err == nil)
	t.Cleanup(func() {
		if err := unix.Unmount(dir, 0); err != nil {
			t.Errorf("unmounting %s: %v", dir, err)
			_ = unix.Unmount(dir, unix.MNT_DETACH)
		}
	})
	return dir
}

// managerV2 is manager on a private cgroup2 mount.
func managerV2(t *testing.T) *Manager {
	t.Helper()
	h, err := DetectAt(mountV2(t))
	if err != nil {
		t.Fatal(err)
	}
	if h.Mode != V2 {
		t.Fatalf("DetectAt(a cgroup2 mount) = %v, want %v", h.Mode, V2)
	}
	m, err := NewIn(h, "loomtest-v2-"+strconv.Itoa(os.Getpid()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := m.Clear(); err != nil {
			t.Error(err)
		}
	})
	return m
}

func TestV2GroupConfinesAndKills(t *testing.T) {
	m := managerV2(t)
	var cpus []int
	if m.Hierarchy().Has("cpuset") {
		host, err := HostCPUs()
		if err != nil {
			t.Fatal(err)
		}
		cpus = host[:1]
	}
	confinesAndKills(t, m, cpus)
}

// TestV2RefusesMissingControllers: a limit whose controller the
// hierarchy lacks is an error naming it, and no group is left.
func TestV2RefusesMissingControllers(t *testing.T) {
	m := managerV2(t)
	for _, c := range []struct {
		controller string
		limits     Limits
	}{
		{"memory", Limits{MemBytes: 32 << 20}},
		{"cpuset", Limits{CPUs: []int{0}}},
	} {
		if m.Hierarchy().Has(c.controller) {
			continue
		}
		_, err := m.Create(Task{Job: 9, Name: "9.1.0"}, c.limits)
		var mc *MissingControllerError
		if !errors.As(err, &mc) || mc.Controller != c.controller || !strings.Contains(err.Error(), "no "+c.controller+" controller") {
			t.Errorf("Create(%+v) = %v, want a MissingControllerError for %s", c.limits, err, c.controller)
		}
		if ts, _ := m.List(); len(ts) != 0 {
			t.Errorf("after a refused Create, List() = %v", ts)
		}
	}
}

func TestDetectAt(t *testing.T) {
	dir := mountV2(t)
	h, err := DetectAt(dir)
	if err != nil || h.Mode != V2 || h.Mount != dir {
		t.Fatalf("DetectAt(%s) = %+v, %v; want V2 there", dir, h, err)
	}
	b, _ := os.ReadFile(filepath.Join(dir, "cgroup.controllers"))
	if strings.Join(h.Controllers, " ") != strings.TrimSpace(string(b)) {
		t.Errorf("DetectAt(%s).Controllers = %v, want cgroup.controllers' %q", dir, h.Controllers, b)
	}
	if _, err := DetectAt(t.TempDir()); err == nil {
		t.Error("DetectAt(an empty directory) succeeded, want an error")
	}
}
