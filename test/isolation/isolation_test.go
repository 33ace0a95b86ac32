//go:build e2e

package isolation

import (
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/loomhpc/loom/agent/cgroup"
	"github.com/loomhpc/loom/api"
	"github.com/loomhpc/loom/api/apirpc"
	"github.com/loomhpc/loom/cpulist"
	"github.com/loomhpc/loom/gpu"
	"github.com/loomhpc/loom/internal/harness"
	"github.com/loomhpc/loom/test/cluster"
)

// standIns are the device numbers given to the simulated node's four
// GPUs: distinct character devices that open without a driver (zero,
// full, random, urandom), so the cgroup's device rules are what refuses
// one.
var standIns = []uint64{unix.Mkdev(1, 5), unix.Mkdev(1, 7), unix.Mkdev(1, 8), unix.Mkdev(1, 9)}

type env struct {
	t     *testing.T
	dir   string // the cluster's and the jobs' directory, outside /tmp
	devs  string // the stand-in GPU device nodes
	root  string // the agent's cgroup root
	srv   *cluster.Server
	agent *cluster.Proc
	jobs  apirpc.JobServiceClient
	nodes apirpc.NodeServiceClient
}

// newEnv starts a server and one isolating agent (a simulated 4-GPU node)
// whose jobs run as loomalice. Everything lives under /var/tmp: the jobs'
// private /tmp hides the real one, where the test's temporary dirs are.
func newEnv(t *testing.T) *env {
	t.Helper()
	return newEnvWith(t)
}

// newEnvWith is newEnv with flags for the server (a --config).
func newEnvWith(t *testing.T, serverFlags ...string) *env {
	t.Helper()
	mode, err := cgroup.Detect()
	harness.Require(t, fmt.Sprintf("root and a cgroup file system (%v)", err), err == nil)
	root := fmt.Sprintf("loomtest_%d_%s", os.Getpid(), strings.ReplaceAll(t.Name(), "/", "_"))
	cgs, err := cgroup.New(mode, root)
	if err != nil {
		t.Fatal(err)
	}
	// Registered before the agent starts, so it runs after the agent is
	// killed: the ranks it leaves (they outlive it) go too.
	t.Cleanup(func() {
		if err := cgs.Clear(); err != nil {
			t.Errorf("removing the test's cgroups: %v", err)
		}
	})
	dir, err := os.MkdirTemp("/var/tmp", "loom-isolation-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, dir: dir, devs: filepath.Join(dir, "dev"), root: root}
	e.start("iso1", 32100, serverFlags, "--private-tmp", "--cgroup-root", root)
	// Before the agent is killed: a test that ends with its last job would
	// otherwise kill it while it removes the ranks' groups.
	t.Cleanup(func() {
		if !t.Failed() {
			e.waitIdle()
		}
	})
	return e
}

// start gives e stand-in device nodes for the simulated GPUs, a server
// (with serverFlags) and one isolating agent named node (with agentFlags
// beside --isolation cgroup and --device-dir), and waits until the agent
// has registered; its jobs run as loomalice.
func (e *env) start(node string, ports int, serverFlags []string, agentFlags ...string) {
	t := e.t
	t.Helper()
	if err := os.Mkdir(e.devs, 0o755); err != nil {
		t.Fatal(err)
	}
	for i, d := range standIns {
		p := filepath.Join(e.devs, fmt.Sprintf("nvidia%d", i))
		if err := unix.Mknod(p, unix.S_IFCHR|0o666, int(d)); err != nil {
			t.Fatal(err)
		}
		os.Chmod(p, 0o666) // opening is a matter of the device filter, not of the mode
	}
	e.srv = cluster.StartServer(t, e.dir, "server", serverFlags...)
	args, err := harness.Agent{Name: node, Dir: e.dir, Profile: "pcie-4", Ports: ports, Servers: []string{e.srv.RPC},
		PKI: cluster.PKI(t, e.dir)}.Args()
	if err != nil {
		t.Fatal(err)
	}
	args = append(args, "--isolation", "cgroup", "--device-dir", e.devs)
	e.agent = cluster.Start(t, e.dir, node, append(args, agentFlags...)...)
	e.jobs, e.nodes = cluster.ClientAs(t, e.srv.Client(), cluster.LookupUser(t, cluster.UserA))
	cluster.WaitFor(t, "the agent to register", 30*time.Second, func() bool {
		r, err := e.nodes.ListNodes(cluster.Ctx(t), &api.ListNodesRequest{})
		return err == nil && len(r.Nodes) == 1
	})
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(e.srv.Tail())
			t.Log(e.agent.Tail())
		}
	})
}

// work makes a directory loomalice may write in.
func (e *env) work(name string) string {
	e.t.Helper()
	d := filepath.Join(e.dir, name)
	if err := os.Mkdir(d, 0o777); err != nil {
		e.t.Fatal(err)
	}
	os.Chmod(d, 0o777)
	return d
}

func (e *env) submit(spec *api.JobSpec) uint64 {
	e.t.Helper()
	r, err := e.jobs.Submit(cluster.Ctx(e.t), &api.SubmitRequest{Spec: spec})
	if err != nil {
		e.t.Fatalf("submit: %v", err)
	}
	return r.JobId
}

func (e *env) job(id uint64) *api.Job {
	e.t.Helper()
	r, err := e.jobs.GetJob(cluster.Ctx(e.t), &api.GetJobRequest{JobId: id})
	if err != nil {
		e.t.Fatalf("get job %d: %v", id, err)
	}
	return r.Job
}

func (e *env) waitEnd(id uint64) *api.Job {
	e.t.Helper()
	cluster.WaitFor(e.t, fmt.Sprintf("job %d to end", id), 60*time.Second, func() bool { return e.job(id).State.Terminal() })
	return e.job(id)
}

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestNodeSaysItIsolates(t *testing.T) {
	e := newEnv(t)
	r, err := e.nodes.GetNode(cluster.Ctx(t), &api.GetNodeRequest{Name: "iso1"})
	if err != nil {
		t.Fatal(err)
	}
	if got := r.Node.Labels["loom.isolation"]; !strings.HasPrefix(got, "cgroup-v") || !strings.HasSuffix(got, " "+e.root) {
		t.Errorf("node label loom.isolation = %q, want cgroup-v1 or cgroup-v2 and the root %s", got, e.root)
	}
}

// TestRankOpensOnlyItsGPU: with CUDA_VISIBLE_DEVICES unset, a rank can
// open its own GPU's device node and none of the others'; its CPUs are
// those the agent bound it to.
func TestRankOpensOnlyItsGPUAndRunsOnItsCPUs(t *testing.T) {
	e := newEnv(t)
	w := e.work("gpu")
	script := fmt.Sprintf(`#!/bin/sh
unset CUDA_VISIBLE_DEVICES
grep Cpus_allowed_list /proc/self/status
echo "bound $LOOM_CPU_BIND_LIST $SLURM_CPU_BIND"
for i in 0 1 2 3; do
  if head -c1 %s/nvidia$i >/dev/null 2>&1; then echo "gpu$i open"; else echo "gpu$i refused"; fi
done
`, e.devs)
	id := e.submit(&api.JobSpec{NodesMin: 1, NodesMax: 1, NtasksPerNode: 1, GpusPerNode: 1, Script: script, WorkingDir: w, Output: "out.txt"})
	j := e.waitEnd(id)
	out, _ := os.ReadFile(filepath.Join(w, "out.txt"))
	if j.State != api.JobState_COMPLETED {
		t.Fatalf("job ended %s (%s):\n%s", j.State, j.Reason, out)
	}
	mine := j.Allocation.Ranks[0].GpuIndexes[0]
	for i := uint32(0); i < 4; i++ {
		want := fmt.Sprintf("gpu%d refused", i)
		if i == mine {
			want = fmt.Sprintf("gpu%d open", i)
		}
		if !strings.Contains(string(out), want+"\n") {
			t.Errorf("GPU %d is %d's? output lacks %q:\n%s", i, mine, want, out)
		}
	}
	var allowed, bound string
	for _, line := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(line, "Cpus_allowed_list:"); ok {
			allowed = strings.TrimSpace(v)
		}
		if v, ok := strings.CutPrefix(line, "bound "); ok {
			bound, _, _ = strings.Cut(v, " ")
		}
	}
	if allowed == "" || allowed != bound {
		t.Errorf("Cpus_allowed_list %q, want the agent's binding %q:\n%s", allowed, bound, out)
	}
}

// TestDisjointRanksGetTheirMappedCPUs: two ranks of one node, one core
// each, hold the scheduler's cores 0 and 1 and are bound to exactly the
// host CPUs the mapping gives those.
func TestDisjointRanksGetTheirMappedCPUs(t *testing.T) {
	host, err := cgroup.HostCPUs()
	if err != nil {
		t.Fatal(err)
	}
	harness.Require(t, "a host of 2 CPUs or more", len(host) >= 2)
	e := newEnv(t)
	w := e.work("cpus")
	id := e.submit(&api.JobSpec{NodesMin: 1, NodesMax: 1, NtasksPerNode: 2, CpusPerTask: 1, WorkingDir: w, Output: "out-%t.txt",
		Argv: []string{"/bin/grep", "Cpus_allowed_list", "/proc/self/status"}})
	j := e.waitEnd(id)
	if j.State != api.JobState_COMPLETED {
		t.Fatalf("job ended %s (%s)", j.State, j.Reason)
	}
	held := map[uint32]bool{}
	for _, r := range j.Allocation.Ranks {
		if len(r.Cores) != 1 || held[r.Cores[0]] {
			t.Fatalf("rank %d holds cores %v, want one of its own", r.Rank, r.Cores)
		}
		held[r.Cores[0]] = true
		out := read(t, filepath.Join(w, fmt.Sprintf("out-%d.txt", r.Rank)))
		got := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(out), "Cpus_allowed_list:"))
		if want := mappedCPUs(host, r.Cores); got != want {
			t.Errorf("rank %d: Cpus_allowed_list %q, want %q (its core %d on host CPUs %v)", r.Rank, got, want, r.Cores[0], host)
		}
	}
	if !held[0] || !held[1] {
		t.Errorf("the ranks hold cores %v of an idle node, want its lowest, 0 and 1", held)
	}
}

// mappedCPUs is the cpulist the agent's documented mapping gives cores:
// core c runs on host CPU host[c mod len(host)] (no CPU is reserved here).
func mappedCPUs(host []int, cores []uint32) string {
	var out []int
	for _, c := range cores {
		out = append(out, host[int(c)%len(host)])
	}
	slices.Sort(out)
	return cpulist.Format(slices.Compact(out))
}

func TestRankPastItsMemoryEndsOutOfMemory(t *testing.T) {
	e := newEnv(t)
	w := e.work("oom")
	id := e.submit(&api.JobSpec{NodesMin: 1, NodesMax: 1, NtasksPerNode: 1, MemPerNodeMb: 32, WorkingDir: w, Output: "out.txt",
		Script: "#!/bin/sh\nx=0123456789abcdef\nwhile :; do x=\"$x$x\"; done\n"})
	j := e.waitEnd(id)
	if want := fmt.Sprintf("step %d.batch killed by the out-of-memory killer", id); j.State != api.JobState_OUT_OF_MEMORY || !strings.Contains(j.Reason, want) {
		t.Errorf("job growing past --mem=32M ended %s (%s), want OUT_OF_MEMORY naming its step (%q)", j.State, j.Reason, want)
	}
}

// TestDaemonisedChildDiesWithItsJob: a rank double-forks a sleep into a
// session of its own and exits; the sleep does not outlive the job.
func TestDaemonisedChildDiesWithItsJob(t *testing.T) {
	e := newEnv(t)
	w := e.work("daemon")
	id := e.submit(&api.JobSpec{NodesMin: 1, NodesMax: 1, NtasksPerNode: 1, WorkingDir: w, Output: "out.txt",
		Script: "#!/bin/sh\n" + daemoniseSleep})
	if j := e.waitEnd(id); j.State != api.JobState_COMPLETED {
		t.Fatalf("job ended %s (%s)", j.State, j.Reason)
	}
	waitSleeperGone(t, w)
}

// daemoniseSleep is a script's tail that double-forks `sleep 1000` into
// a session of its own, writes its pid to sleeper.pid and exits.
const daemoniseSleep = "(setsid sh -c 'echo $$ > sleeper.pid; exec sleep 1000' </dev/null >/dev/null 2>&1 &)\n" +
	"while [ ! -s sleeper.pid ]; do sleep 0.05; done\necho forked\n"

// waitSleeperGone fails t unless the sleep daemoniseSleep started in w
// is gone soon.
func waitSleeperGone(t *testing.T, w string) {
	t.Helper()
	pid, err := strconv.Atoi(strings.TrimSpace(read(t, filepath.Join(w, "sleeper.pid"))))
	if err != nil {
		t.Fatal(err)
	}
	cluster.WaitFor(t, fmt.Sprintf("the daemonised sleep (pid %d) to be gone", pid), 10*time.Second, func() bool {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		return err != nil || !strings.HasPrefix(string(b), "sleep")
	})
}

// TestTmpIsPrivateToItsJob: what one job writes to /tmp, another job on
// the node does not see, nor does the host; the writer sees it until its
// end.
func TestTmpIsPrivateToItsJob(t *testing.T) {
	e := newEnv(t)
	w := e.work("tmp")
	secret := "loom-secret-" + strconv.Itoa(os.Getpid())
	a := e.submit(&api.JobSpec{NodesMin: 1, NodesMax: 1, NtasksPerNode: 1, WorkingDir: w, Output: "a.txt",
		Script: fmt.Sprintf("#!/bin/sh\necho a > /tmp/%s && touch a.ready\nwhile [ ! -e gate ]; do sleep 0.05; done\ncat /tmp/%s\n", secret, secret)})
	cluster.WaitFor(t, "job A to write its /tmp", 30*time.Second, func() bool {
		_, err := os.Stat(filepath.Join(w, "a.ready"))
		return err == nil
	})
	b := e.submit(&api.JobSpec{NodesMin: 1, NodesMax: 1, NtasksPerNode: 1, WorkingDir: w, Output: "b.txt",
		Script: fmt.Sprintf("#!/bin/sh\nif [ -e /tmp/%s ]; then echo visible; else echo invisible; fi\n", secret)})
	if j := e.waitEnd(b); j.State != api.JobState_COMPLETED {
		t.Fatalf("job B ended %s (%s)", j.State, j.Reason)
	}
	if _, err := os.Stat("/tmp/" + secret); err == nil {
		os.Remove("/tmp/" + secret)
		t.Error("job A's /tmp file is in the host's /tmp")
	}
	if err := os.WriteFile(filepath.Join(w, "gate"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if j := e.waitEnd(a); j.State != api.JobState_COMPLETED {
		t.Fatalf("job A ended %s (%s)", j.State, j.Reason)
	}
	if got := read(t, filepath.Join(w, "b.txt")); got != "invisible\n" {
		t.Errorf("job B saw job A's /tmp: %q", got)
	}
	if got := read(t, filepath.Join(w, "a.txt")); got != "a\n" {
		t.Errorf("job A's own /tmp: %q, want it to keep its file", got)
	}
	cluster.WaitFor(t, "job A's private /tmp to be removed", 10*time.Second, func() bool {
		ents, _ := os.ReadDir(filepath.Join(e.dir, "iso1", "jobtmp"))
		return len(ents) == 0
	})
}

// TestAgentKill9ReattachesToRunningRanks: an agent killed under a running
// job is restarted; it finds the rank by its cgroup, and the job completes
// in its first generation with every line once.
func TestAgentKill9ReattachesToRunningRanks(t *testing.T) {
	e := newEnv(t)
	w := e.work("restart")
	id := e.submit(&api.JobSpec{NodesMin: 1, NodesMax: 1, NtasksPerNode: 2, WorkingDir: w, Output: "out-%t.txt",
		Argv: []string{"/bin/sh", "-c", "for i in $(seq 1 40); do echo line $i; sleep 0.1; done"}})
	cluster.WaitFor(t, "the ranks to print", 30*time.Second, func() bool {
		for r := 0; r < 2; r++ {
			b, _ := os.ReadFile(filepath.Join(w, fmt.Sprintf("out-%d.txt", r)))
			if !strings.Contains(string(b), "line 3\n") {
				return false
			}
		}
		return true
	})
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
	for r := 0; r < 2; r++ {
		if got := read(t, filepath.Join(w, fmt.Sprintf("out-%d.txt", r))); got != want.String() {
			t.Errorf("rank %d output:\n%s\nwant every line once", r, got)
		}
	}
	if log := read(t, e.agent.Log); strings.Count(log, `msg="rank recovered"`) != 2 {
		t.Errorf("the restarted agent recovered %d ranks, want 2", strings.Count(log, `msg="rank recovered"`))
	}
}

// waitIdle waits until the agent has removed its cgroups, as it does with
// a node's last rank: a test that ends sooner kills the agent midway, and
// the cleanup then finds groups half removed (EBUSY).
func (e *env) waitIdle() {
	e.t.Helper()
	cluster.WaitFor(e.t, "the agent to remove its cgroups", 10*time.Second, func() bool {
		left, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", "*", e.root))
		_, err := os.Stat(filepath.Join("/sys/fs/cgroup", e.root))
		return len(left) == 0 && err != nil
	})
}

// bindLines reads a rank's "key value" lines, as the binding scripts below
// print them.
func bindLines(t *testing.T, path string) map[string]string {
	t.Helper()
	got := map[string]string{}
	for _, line := range strings.Split(read(t, path), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && k == "Cpus_allowed_list" {
			got[k] = strings.TrimSpace(v)
		} else if k, v, ok := strings.Cut(line, " "); ok {
			got[k] = v
		}
	}
	return got
}

// bindScript is each rank's command (a batch script would run once per
// node, on all the node's cores).
const bindScript = `
grep Cpus_allowed_list /proc/self/status
echo "list $LOOM_CPU_BIND_LIST"
echo "cores $LOOM_CPU_BIND_CORES"
echo "bind $SLURM_CPU_BIND"
echo "pid $$"
`

// TestRanksRunOnTheirGPUsNUMANode: the pcie-4 profile puts GPUs 0-1 on
// NUMA node 0 (CPUs 0-15,32-47) and 2-3 on node 1 (16-31,48-63). Each of
// two ranks of two GPUs holds, in its allocation, cores the scheduler
// chose from its GPUs' node, and runs on exactly the host CPUs those
// cores map to, as the agent reports them.
func TestRanksRunOnTheirGPUsNUMANode(t *testing.T) {
	host, err := cgroup.HostCPUs()
	if err != nil {
		t.Fatal(err)
	}
	m, err := gpu.SimulatedMachine("pcie-4", "iso1", len(host))
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t)
	w := e.work("numa")
	id := e.submit(&api.JobSpec{NodesMin: 1, NodesMax: 1, NtasksPerNode: 2, GpusPerTask: 2, CpusPerTask: 3,
		WorkingDir: w, Output: "out-%t.txt", Argv: []string{"/bin/sh", "-c", bindScript}})
	j := e.waitEnd(id)
	if j.State != api.JobState_COMPLETED {
		t.Fatalf("job ended %s (%s)", j.State, j.Reason)
	}
	nodes := map[int]bool{}
	for _, r := range j.Allocation.Ranks {
		got := bindLines(t, filepath.Join(w, fmt.Sprintf("out-%d.txt", r.Rank)))
		if len(r.GpuIndexes) != 2 {
			t.Fatalf("rank %d holds GPUs %v, want 2", r.Rank, r.GpuIndexes)
		}
		g := m.Topology.GPUs[r.GpuIndexes[0]]
		nodes[g.NUMANode] = true
		near, err := cpulist.Parse(g.CPUAffinity)
		if err != nil {
			t.Fatal(err)
		}
		if len(r.Cores) != 3 || got["cores"] != api.FormatCores(r.Cores) {
			t.Fatalf("rank %d: allocation's cores %v, LOOM_CPU_BIND_CORES %q; want 3, the same:\n%v", r.Rank, r.Cores, got["cores"], got)
		}
		for _, c := range r.Cores {
			if !slices.Contains(near, int(c)) {
				t.Errorf("rank %d on GPUs %v (NUMA node %d, CPUs %s) holds core %d", r.Rank, r.GpuIndexes, g.NUMANode, g.CPUAffinity, c)
			}
		}
		want := mappedCPUs(host, r.Cores)
		if got["list"] != want || got["Cpus_allowed_list"] != want {
			t.Errorf("rank %d: Cpus_allowed_list %q, LOOM_CPU_BIND_LIST %q; want both %q, cores %s folded onto host CPUs %v",
				r.Rank, got["Cpus_allowed_list"], got["list"], want, got["cores"], host)
		}
		if !strings.HasPrefix(got["bind"], "quiet,mask_cpu:0x") {
			t.Errorf("rank %d: SLURM_CPU_BIND=%q, want quiet,mask_cpu:0x…", r.Rank, got["bind"])
		}
	}
	if len(nodes) != 2 {
		t.Errorf("the ranks' GPUs are on NUMA nodes %v, want one rank on each", nodes)
	}
}

// TestCPUBindVerboseNone: with --cpu-bind=verbose,none two one-core
// ranks both run on the job's two cores (mapped onto two host CPUs), say
// none in SLURM_CPU_BIND, and print Slurm's line with their pid to their
// stderr; a form Loom does not implement is refused at submit.
func TestCPUBindVerboseNone(t *testing.T) {
	host, err := cgroup.HostCPUs()
	if err != nil {
		t.Fatal(err)
	}
	harness.Require(t, "a host of 2 CPUs or more", len(host) >= 2)
	e := newEnv(t)
	w := e.work("verbose")
	id := e.submit(&api.JobSpec{NodesMin: 1, NodesMax: 1, NtasksPerNode: 2, CpusPerTask: 1, CpuBind: "verbose,none",
		WorkingDir: w, Output: "out-%t.txt", Error: "err-%t.txt", Argv: []string{"/bin/sh", "-c", bindScript}})
	if j := e.waitEnd(id); j.State != api.JobState_COMPLETED {
		t.Fatalf("job ended %s (%s)", j.State, j.Reason)
	}
	want := cpulist.Format(host[:2])
	for r := 0; r < 2; r++ {
		got := bindLines(t, filepath.Join(w, fmt.Sprintf("out-%d.txt", r)))
		if got["bind"] != "verbose,none" || got["Cpus_allowed_list"] != want || got["list"] != want {
			t.Errorf("rank %d: SLURM_CPU_BIND=%q, Cpus_allowed_list %q, LOOM_CPU_BIND_LIST %q; want verbose,none and both %s (the job's cores 0-1)",
				r, got["bind"], got["Cpus_allowed_list"], got["list"], want)
		}
		mask := new(big.Int)
		for _, c := range host[:2] {
			mask.SetBit(mask, c, 1)
		}
		line := fmt.Sprintf("cpu-bind=NONE - iso1, task %2d %2d [%s]: mask 0x%s set\n", r, r, got["pid"], strings.ToUpper(mask.Text(16)))
		if stderr := read(t, filepath.Join(w, fmt.Sprintf("err-%d.txt", r))); stderr != line {
			t.Errorf("rank %d stderr %q, want %q", r, stderr, line)
		}
	}
	_, err = e.jobs.Submit(cluster.Ctx(t), &api.SubmitRequest{Spec: &api.JobSpec{NodesMin: 1, NodesMax: 1, NtasksPerNode: 1,
		CpuBind: "map_ldom:0", WorkingDir: w, Argv: []string{"/bin/true"}}})
	if err == nil || !strings.Contains(err.Error(), "--cpu-bind") || !strings.Contains(err.Error(), "map_ldom") {
		t.Errorf("submit with --cpu-bind=map_ldom:0: %v, want an error naming --cpu-bind and map_ldom", err)
	}
}

// TestCPUBindMapCPU: with --cpu-bind=map_cpu:1,0 the two one-core ranks
// of a job holding cores 0 and 1 swap them: rank 0 runs on core 1's host
// CPU and rank 1 on core 0's, and SLURM_CPU_BIND says map_cpu:1,0. A
// map_cpu naming a core the job does not hold fails the rank with an
// error naming it.
func TestCPUBindMapCPU(t *testing.T) {
	host, err := cgroup.HostCPUs()
	if err != nil {
		t.Fatal(err)
	}
	harness.Require(t, "a host of 2 CPUs or more", len(host) >= 2)
	e := newEnv(t)
	w := e.work("map")
	id := e.submit(&api.JobSpec{NodesMin: 1, NodesMax: 1, NtasksPerNode: 2, CpusPerTask: 1, CpuBind: "map_cpu:1,0",
		WorkingDir: w, Output: "out-%t.txt", Argv: []string{"/bin/sh", "-c", bindScript}})
	j := e.waitEnd(id)
	if j.State != api.JobState_COMPLETED {
		t.Fatalf("job ended %s (%s)", j.State, j.Reason)
	}
	if got := api.FormatCores(j.Allocation.NodeCores("iso1")); got != "0-1" {
		t.Fatalf("the job holds cores %s of an idle node, want 0-1", got)
	}
	for r, core := range []uint32{1, 0} {
		got := bindLines(t, filepath.Join(w, fmt.Sprintf("out-%d.txt", r)))
		want := mappedCPUs(host, []uint32{core})
		if got["Cpus_allowed_list"] != want || got["cores"] != strconv.Itoa(int(core)) || got["bind"] != "quiet,map_cpu:1,0" {
			t.Errorf("rank %d: Cpus_allowed_list %q, LOOM_CPU_BIND_CORES %q, SLURM_CPU_BIND %q; want %s, %d, quiet,map_cpu:1,0",
				r, got["Cpus_allowed_list"], got["cores"], got["bind"], want, core)
		}
	}
	id = e.submit(&api.JobSpec{NodesMin: 1, NodesMax: 1, NtasksPerNode: 1, CpusPerTask: 1, CpuBind: "map_cpu:5",
		WorkingDir: w, Argv: []string{"/bin/true"}})
	j = e.waitEnd(id)
	msg := j.Allocation.Tasks[0].GetMessage()
	if j.State == api.JobState_COMPLETED || !strings.Contains(msg, "--cpu-bind=map_cpu:5: CPU 5 is not one of the job's on iso1") {
		t.Errorf("map_cpu:5 outside the job's cores: job %s, rank's message %q; want it failed, naming CPU 5", j.State, msg)
	}
}
