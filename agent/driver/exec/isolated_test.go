package exec

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/loomhpc/loom/agent/cgroup"
	"github.com/loomhpc/loom/agent/driver"
	"github.com/loomhpc/loom/internal/harness"
)

// TestMain lets the test binary stand in for loom as the shim.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == ShimCommand {
		os.Exit(ShimMain(os.Args[2:], os.Stderr))
	}
	os.Exit(m.Run())
}

// isolated returns an isolating driver with its own cgroup root and a
// device dir where simulated GPUs 0 and 1 have stand-in nodes with
// distinct numbers (/dev/random's and /dev/full's), removed at the end.
func isolated(t *testing.T, state string) (*Driver, string) {
	t.Helper()
	mode, err := cgroup.Detect()
	harness.Require(t, "root and a cgroup file system", err == nil)
	root := "loomexectest-" + strconv.Itoa(os.Getpid())
	m, err := cgroup.New(mode, root)
	if err != nil {
		t.Fatal(err)
	}
	devs := outsideTmp(t)
	for name, dev := range map[string]uint64{"nvidia0": unix.Mkdev(1, 8), "nvidia1": unix.Mkdev(1, 7)} {
		if err := unix.Mknod(filepath.Join(devs, name), unix.S_IFCHR|0o666, int(dev)); err != nil {
			t.Fatal(err)
		}
	}
	d, err := NewIsolated(state, Isolation{Cgroups: m, Shim: []string{os.Args[0], ShimCommand}, DeviceDir: devs,
		PrivateTmpDir: t.TempDir(), PrivateTmp: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := m.Clear(); err != nil {
			t.Error(err)
		}
	})
	return d, devs
}

func TestIsolatedRankIsConfined(t *testing.T) {
	d, devs := isolated(t, t.TempDir())
	host, err := cgroup.HostCPUs()
	if err != nil {
		t.Fatal(err)
	}
	marker := "loom-isolation-" + strconv.Itoa(os.Getpid())
	s := spec(t, "41.1.0", "/bin/sh", "-c", strings.Join([]string{
		"grep Cpus_allowed_list /proc/self/status",
		"head -c1 " + devs + "/nvidia0 >/dev/null && echo own-gpu-ok",
		"head -c1 " + devs + "/nvidia1 >/dev/null || echo other-gpu-refused",
		"touch /tmp/" + marker + " && echo tmp-ok",
		"(setsid sleep 1000 </dev/null >/dev/null 2>&1 &)",
	}, "; "))
	s.GPUIndexes = []uint32{0}
	s.CPUSet = host[len(host)-1:]
	s.MemMB = 256
	h, err := d.Start(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	ex, err := h.Wait(ctx(t))
	if err != nil || ex.Code != 0 || ex.OOM {
		t.Fatalf("Wait = %+v, %v", ex, err)
	}
	out, _ := os.ReadFile(s.Stdout)
	for _, want := range []string{"Cpus_allowed_list:\t" + strconv.Itoa(host[len(host)-1]) + "\n", "own-gpu-ok", "other-gpu-refused", "tmp-ok"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output %q lacks %q", out, want)
		}
	}
	if _, err := os.Stat("/tmp/" + marker); err == nil {
		os.Remove("/tmp/" + marker)
		t.Error("the rank's /tmp is the host's")
	}
	ch := h.(*cgHandle)
	if pids, _ := ch.g.Pids(); len(pids) != 0 {
		t.Errorf("processes %v left in the rank's group after its end", pids)
	}
	if err := h.Cleanup(context.Background()); err != nil {
		t.Fatal(err)
	}
	if ts, _ := d.iso.Cgroups.List(); len(ts) != 0 {
		t.Errorf("groups %v left after Cleanup", ts)
	}
}

func TestIsolatedRankOOM(t *testing.T) {
	d, _ := isolated(t, t.TempDir())
	s := spec(t, "42.1.0", "/bin/sh", "-c", `x=0123456789abcdef; while :; do x="$x$x"; done`)
	// Room for the shim itself (the test binary, larger under -race),
	// which the hog's growth passes within a few doublings.
	s.MemMB = 128
	h, err := d.Start(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	ex, err := h.Wait(ctx(t))
	if err != nil || !ex.OOM {
		t.Fatalf("Wait = %+v, %v; want an OOM kill", ex, err)
	}
}

// TestIsolatedRecover: a new driver on the same state dir (the agent
// restarted) re-attaches to a running rank and learns its exit code, and
// kills a rank it was not told of.
func TestIsolatedRecover(t *testing.T) {
	state := t.TempDir()
	old, _ := isolated(t, state)
	gate := filepath.Join(outsideTmp(t), "gate")
	s := spec(t, "43.1.0", "/bin/sh", "-c", "while [ ! -e "+gate+" ]; do sleep 0.05; done; echo finished; exit 3")
	if _, err := old.Start(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	stray, err := old.Start(context.Background(), spec(t, "44.1.0", "/bin/sleep", "1000"))
	if err != nil {
		t.Fatal(err)
	}
	// Both shims are in their groups before the agent "restarts".
	harness.WaitFor(t, "both ranks in their groups", 10*time.Second, func() bool {
		for _, task := range []string{"43.1.0", "44.1.0"} {
			g, err := old.iso.Cgroups.Load(cgroup.Task{Job: jobOf(task), Name: task})
			if err != nil {
				return false
			}
			if pids, _ := g.Pids(); len(pids) < 2 {
				return false
			}
		}
		return true
	})
	d := New(state, nil)
	d.iso = old.iso
	hs, err := d.Recover(context.Background(), []string{"43.1.0"})
	if err != nil || len(hs) != 1 || hs["43.1.0"] == nil {
		t.Fatalf("Recover = %v, %v; want a handle for 43.1.0", hs, err)
	}
	// Killed with its shim, it ends without an exit status.
	if _, err := stray.Wait(ctx(t)); errors.Is(err, context.DeadlineExceeded) {
		t.Error("the rank the agent had no record of was not killed")
	}
	if ts, _ := d.iso.Cgroups.List(); len(ts) != 1 || ts[0].Name != "43.1.0" {
		t.Errorf("groups after Recover %v, want 43.1.0's only", ts)
	}
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	ex, err := hs["43.1.0"].Wait(ctx(t))
	if err != nil || ex.Code != 3 {
		t.Fatalf("recovered Wait = %+v, %v; want exit code 3", ex, err)
	}
	if out, _ := os.ReadFile(s.Stdout); string(out) != "finished\n" {
		t.Errorf("output %q, want one line", out)
	}
}

// outsideTmp is a directory that ranks see, unlike the test's temporary
// dirs under the /tmp their private one hides.
func outsideTmp(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("/run", "loomexectest-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), harness.Scale(30*time.Second))
	t.Cleanup(cancel)
	return c
}

var _ driver.Driver = (*Driver)(nil)
