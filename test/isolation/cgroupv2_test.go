//go:build e2e

package isolation

import (
	"errors"
	"fmt"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/loomhpc/loom/agent/cgroup"
	"github.com/loomhpc/loom/api"
	"github.com/loomhpc/loom/internal/harness"
	"github.com/loomhpc/loom/test/cluster"
)

// v2Env is env with the agent on the cgroup v2 backend, on a cgroup2
// file system the test mounts itself. On a hybrid host (v1 controllers,
// as on CI) that hierarchy offers few controllers or none, but its core
// (cgroup.procs, cgroup.kill, cgroup.freeze) and the eBPF device filter
// work: what a v2 node relies on for devices, process tracking and
// re-attach is exercised for real.
type v2Env struct {
	*env
	h cgroup.Hierarchy
}

// newV2Env mounts cgroup2 at a directory of the test's own and starts a
// server and one agent (a simulated 4-GPU node) with --cgroup-mount
// there, jobs running as loomalice. Everything is removed and unmounted
// whatever the outcome: the unified hierarchy is one per host, so a
// group left in it would show in every other cgroup2 mount.
func newV2Env(t *testing.T) *v2Env {
	t.Helper()
	harness.Require(t, "root", os.Geteuid() == 0)
	dir, err := os.MkdirTemp("/var/tmp", "loom-cgv2-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	mnt := filepath.Join(dir, "cgroup2")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	err = unix.Mount("none", mnt, "cgroup2", 0, "")
	harness.Require(t, fmt.Sprintf("a cgroup2 file system to mount (%v)", err), err == nil)
	t.Cleanup(func() {
		if err := unix.Unmount(mnt, 0); err != nil {
			t.Errorf("unmounting the test's cgroup2 at %s: %v", mnt, err)
			_ = unix.Unmount(mnt, unix.MNT_DETACH)
		}
	})
	h, err := cgroup.DetectAt(mnt)
	if err != nil || h.Mode != cgroup.V2 {
		t.Fatalf("DetectAt(%s) = %+v, %v; want cgroup v2", mnt, h, err)
	}
	root := fmt.Sprintf("loomtest_v2_%d_%s", os.Getpid(), t.Name())
	cgs, err := cgroup.NewIn(h, root)
	if err != nil {
		t.Fatal(err)
	}
	// Runs after the agent is killed (registered before it starts), and
	// before the unmount.
	t.Cleanup(func() {
		if err := cgs.Clear(); err != nil {
			t.Errorf("removing the test's cgroups: %v", err)
			killGroups(t, filepath.Join(mnt, root))
		}
	})
	e := &env{t: t, dir: dir, devs: filepath.Join(dir, "dev"), root: root}
	e.start("v2n1", 32400, nil, "--cgroup-mount", mnt, "--cgroup-root", root)
	t.Cleanup(func() {
		if !t.Failed() {
			cluster.WaitFor(t, "the agent to remove its cgroups", 10*time.Second, func() bool {
				_, err := os.Stat(filepath.Join(mnt, root))
				return errors.Is(err, os.ErrNotExist)
			})
		}
	})
	return &v2Env{env: e, h: h}
}

// killGroups empties and removes every group under dir through the
// kernel's files alone, for when the manager under test failed to: a
// group left behind would outlive the test's mount.
func killGroups(t *testing.T, dir string) {
	var dirs []string
	_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	for i := len(dirs) - 1; i >= 0; i-- {
		d := dirs[i]
		_ = os.WriteFile(filepath.Join(d, "cgroup.kill"), []byte("1"), 0)
		cluster.WaitFor(t, "the processes of "+d+" to die", 10*time.Second, func() bool {
			b, err := os.ReadFile(filepath.Join(d, "cgroup.procs"))
			return err != nil || len(strings.TrimSpace(string(b))) == 0
		})
		if err := os.Remove(d); err != nil {
			t.Errorf("removing %s: %v", d, err)
		}
	}
}

// inV2Group says whether a rank's printed /proc/self/cgroup puts it in
// its job's v2 group: "0::/ROOT/job_ID/TASK".
func (e *v2Env) inV2Group(out string, job uint64) bool {
	return strings.Contains(out, fmt.Sprintf("0::/%s/job_%d/", e.root, job))
}

// TestV2RankOpensOnlyItsGPU: on the v2 backend, a rank that unsets
// CUDA_VISIBLE_DEVICES can open its own GPU's device node and none of
// the others': the eBPF filter attached to its group refuses them. The
// node says which isolation is in force.
func TestV2RankOpensOnlyItsGPU(t *testing.T) {
	e := newV2Env(t)
	r, err := e.nodes.GetNode(cluster.Ctx(t), &api.GetNodeRequest{Name: "v2n1"})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := r.Node.Labels["loom.isolation"], "cgroup-v2 "+e.root; got != want {
		t.Errorf("label loom.isolation = %q, want %q", got, want)
	}
	if got, want := r.Node.Labels["loom.isolation.limits"], strings.Join(e.h.Enforced(), " "); got != want || !strings.HasPrefix(got, "devices processes") {
		t.Errorf("label loom.isolation.limits = %q, want %q", got, want)
	}
	if got, want := r.Node.Labels["loom.isolation.missing"], strings.Join(e.h.Missing(), " "); got != want {
		t.Errorf("label loom.isolation.missing = %q, want %q", got, want)
	}
	// What an admin sees: scontrol as root (an operator) on the server's
	// local socket.
	cmd := osexec.Command(cluster.Binary(t), "slurm", "scontrol", "show", "node", "v2n1")
	cmd.Env = append(os.Environ(), "LOOM_ADDR="+e.srv.Client())
	show, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("scontrol show node: %v\n%s", err, show)
	}
	for _, want := range []string{"loom.isolation=cgroup-v2 " + e.root, "loom.isolation.limits=" + strings.Join(e.h.Enforced(), " "),
		"loom.isolation.missing=" + strings.Join(e.h.Missing(), " ")} {
		if !strings.Contains(string(show), want) {
			t.Errorf("scontrol show node lacks %q:\n%s", want, show)
		}
	}
	w := e.work("gpu")
	script := fmt.Sprintf(`#!/bin/sh
unset CUDA_VISIBLE_DEVICES
cat /proc/self/cgroup
for i in 0 1 2 3; do
  if head -c1 %s/nvidia$i >/dev/null 2>&1; then echo "gpu$i open"; else echo "gpu$i refused"; fi
done
`, e.devs)
	id := e.submit(&api.JobSpec{NodesMin: 1, NodesMax: 1, NtasksPerNode: 1, GpusPerNode: 1, Script: script, WorkingDir: w, Output: "out.txt"})
	j := e.waitEnd(id)
	out := read(t, filepath.Join(w, "out.txt"))
	if j.State != api.JobState_COMPLETED {
		t.Fatalf("job ended %s (%s):\n%s", j.State, j.Reason, out)
	}
	if !e.inV2Group(out, id) {
		t.Errorf("the rank is not in a v2 group under %s:\n%s", e.root, out)
	}
	mine := j.Allocation.Ranks[0].GpuIndexes[0]
	for i := uint32(0); i < 4; i++ {
		want := fmt.Sprintf("gpu%d refused", i)
		if i == mine {
			want = fmt.Sprintf("gpu%d open", i)
		}
		if !strings.Contains(out, want+"\n") {
			t.Errorf("GPU %d is %d's? output lacks %q:\n%s", i, mine, want, out)
		}
	}
}

// TestV2DaemonisedChildDiesWithItsJob: a rank double-forks a sleep into a
// session of its own and exits; cgroup.kill (or freeze, kill, thaw) ends
// the sleep with the job.
func TestV2DaemonisedChildDiesWithItsJob(t *testing.T) {
	e := newV2Env(t)
	w := e.work("daemon")
	id := e.submit(&api.JobSpec{NodesMin: 1, NodesMax: 1, NtasksPerNode: 1, WorkingDir: w, Output: "out.txt",
		Script: "#!/bin/sh\ncat /proc/self/cgroup\n" + daemoniseSleep})
	j := e.waitEnd(id)
	out := read(t, filepath.Join(w, "out.txt"))
	if j.State != api.JobState_COMPLETED || !strings.Contains(out, "forked\n") {
		t.Fatalf("job ended %s (%s):\n%s", j.State, j.Reason, out)
	}
	if !e.inV2Group(out, id) {
		t.Errorf("the rank is not in a v2 group under %s:\n%s", e.root, out)
	}
	waitSleeperGone(t, w)
}

// TestV2AgentKill9Reattaches: an agent killed under a running job is
// restarted; it finds the rank by its v2 group, and the job completes in
// its first generation with every line once.
func TestV2AgentKill9Reattaches(t *testing.T) {
	e := newV2Env(t)
	w := e.work("restart")
	id := e.submit(&api.JobSpec{NodesMin: 1, NodesMax: 1, NtasksPerNode: 1, WorkingDir: w, Output: "out.txt",
		Argv: []string{"/bin/sh", "-c", "for i in $(seq 1 40); do echo line $i; sleep 0.1; done"}})
	cluster.WaitFor(t, "the rank to print", 30*time.Second, func() bool {
		b, _ := os.ReadFile(filepath.Join(w, "out.txt"))
		return strings.Contains(string(b), "line 3\n")
	})
	ents, err := os.ReadDir(filepath.Join(e.h.Mount, e.root, fmt.Sprintf("job_%d", id)))
	var groups []string
	for _, g := range ents {
		if g.IsDir() {
			groups = append(groups, g.Name())
		}
	}
	if err != nil || len(groups) != 1 {
		t.Fatalf("groups of job %d under the v2 mount: %v (%v), want one", id, groups, err)
	}
	e.agent.Kill()
	e.agent.Restart(t)
	j := e.waitEnd(id)
	if j.State != api.JobState_COMPLETED || j.RestartCount != 0 || j.Allocation.Generation != 1 {
		t.Fatalf("job ended %s (%s) after %d restarts, want COMPLETED in its first generation", j.State, j.Reason, j.RestartCount)
	}
	var want strings.Builder
	for i := 1; i <= 40; i++ {
		fmt.Fprintf(&want, "line %d\n", i)
	}
	if got := read(t, filepath.Join(w, "out.txt")); got != want.String() {
		t.Errorf("output:\n%s\nwant every line once", got)
	}
	if log := read(t, e.agent.Log); !strings.Contains(log, `msg="re-attached to a rank by its cgroup"`) {
		t.Errorf("the restarted agent's log does not say it re-attached by the cgroup")
	}
}

// TestV2MemoryLimitNeedsItsController: a --mem job on a v2 hierarchy
// without the memory controller is not started, and its state says why;
// where the controller is there, the rank's group holds the limit.
func TestV2MemoryLimitNeedsItsController(t *testing.T) {
	e := newV2Env(t)
	w := e.work("mem")
	script := fmt.Sprintf("#!/bin/sh\ncat %s$(sed -n 's/^0:://p' /proc/self/cgroup)/memory.max\n", e.h.Mount)
	id := e.submit(&api.JobSpec{NodesMin: 1, NodesMax: 1, NtasksPerNode: 1, MemPerNodeMb: 32, WorkingDir: w, Output: "out.txt", Script: script})
	j := e.waitEnd(id)
	if e.h.Has("memory") {
		if out := read(t, filepath.Join(w, "out.txt")); j.State != api.JobState_COMPLETED || out != strconv.Itoa(32<<20)+"\n" {
			t.Errorf("--mem=32M job ended %s (%s), memory.max %q; want COMPLETED with %d", j.State, j.Reason, out, 32<<20)
		}
		return
	}
	if j.State != api.JobState_FAILED || !strings.Contains(j.Reason, "--mem") || !strings.Contains(j.Reason, "no memory controller") {
		t.Errorf("--mem=32M job on a v2 hierarchy without memory ended %s (%q), want FAILED with a reason naming --mem and the missing memory controller", j.State, j.Reason)
	}
	// The agent may have opened the output file; the rank wrote nothing.
	if out, _ := os.ReadFile(filepath.Join(w, "out.txt")); len(out) > 0 {
		t.Errorf("the refused job's rank ran: %s", out)
	}
}

// TestV2CPUBindingNeedsCpuset: without the cpuset controller the node
// binds no rank to cores, so a job that asks for --cpu-bind=cores is
// refused, naming the option, rather than run on every CPU; where the
// controller is there, the rank runs on the cores it was given.
func TestV2CPUBindingNeedsCpuset(t *testing.T) {
	e := newV2Env(t)
	w := e.work("cpus")
	id := e.submit(&api.JobSpec{NodesMin: 1, NodesMax: 1, NtasksPerNode: 1, CpusPerTask: 1, CpuBind: "cores", WorkingDir: w, Output: "out.txt",
		Script: "#!/bin/sh\necho \"$(grep Cpus_allowed_list /proc/self/status | cut -f2) $LOOM_CPU_BIND_LIST\"\n"})
	j := e.waitEnd(id)
	if e.h.Has("cpuset") {
		got := strings.Fields(read(t, filepath.Join(w, "out.txt")))
		if j.State != api.JobState_COMPLETED || len(got) != 2 || got[0] != got[1] {
			t.Errorf("--cpu-bind=cores job ended %s (%s), Cpus_allowed_list and binding %v; want COMPLETED and equal", j.State, j.Reason, got)
		}
		return
	}
	if j.State != api.JobState_FAILED || !strings.Contains(j.Reason, "--cpu-bind=cores") {
		t.Errorf("--cpu-bind=cores job on a v2 hierarchy without cpuset ended %s (%q), want FAILED naming --cpu-bind=cores", j.State, j.Reason)
	}
	if out, _ := os.ReadFile(filepath.Join(w, "out.txt")); len(out) > 0 {
		t.Errorf("the refused job's rank ran: %s", out)
	}
}
