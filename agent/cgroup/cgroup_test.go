package cgroup

import (
	"bufio"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/loomhpc/loom/cpulist"
	"github.com/loomhpc/loom/internal/harness"
)

// manager returns a manager of a root of the test's own, which is removed
// with everything in it when the test ends.
func manager(t *testing.T) *Manager {
	t.Helper()
	mode, err := Detect()
	harness.Require(t, "root and a cgroup file system ("+errString(err)+")", err == nil)
	m, err := New(mode, "loomtest-"+strconv.Itoa(os.Getpid()))
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

func errString(err error) string {
	if err == nil {
		return "found"
	}
	return err.Error()
}

// inGroup starts sh -c script inside g: the shell waits for a line on
// stdin, sent once the test has written its pid to the group.
func inGroup(t *testing.T, g Group, script string) (*osexec.Cmd, *strings.Builder) {
	t.Helper()
	cmd := osexec.Command("/bin/sh", "-c", "read go; "+script)
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	for _, f := range g.ProcsFiles() {
		if err := os.WriteFile(f, []byte(strconv.Itoa(cmd.Process.Pid)), 0); err != nil {
			t.Fatal(err)
		}
	}
	w := bufio.NewWriter(in)
	w.WriteString("go\n")
	w.Flush()
	in.Close()
	return cmd, &out
}

func TestGroupConfinesAndKills(t *testing.T) {
	m := manager(t)
	host, err := HostCPUs()
	if err != nil {
		t.Fatal(err)
	}
	confinesAndKills(t, m, host[:1])
}

// confinesAndKills runs a rank in a group of m that may use cpus (none:
// all) and not /dev/full (1:7), which stands in for another job's GPU;
// the rank leaves a daemonised sleep behind, which Kill ends.
func confinesAndKills(t *testing.T, m *Manager, cpus []int) {
	t.Helper()
	task := Task{Job: 7, Name: "7.1.0"}
	g, err := m.Create(task, Limits{CPUs: cpus, Deny: []Device{{1, 7}}})
	if err != nil {
		t.Fatal(err)
	}
	cmd, out := inGroup(t, g, `grep Cpus_allowed_list /proc/self/status; head -c1 /dev/full && echo opened; head -c1 /dev/zero | wc -c; (setsid sleep 1000 >/dev/null 2>&1 &) ; exit 0`)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("rank: %v: %s", err, out)
	}
	o := out.String()
	if want := "Cpus_allowed_list:\t" + cpulist.Format(cpus); len(cpus) > 0 && !strings.Contains(o, want) {
		t.Errorf("output %q lacks %q", o, want)
	}
	if strings.Contains(o, "opened") || !strings.Contains(o, "Operation not permitted") {
		t.Errorf("output %q: /dev/full was not refused", o)
	}
	if !strings.Contains(o, "\n1\n") {
		t.Errorf("output %q: /dev/zero was not read", o)
	}
	pids, err := g.Pids()
	if err != nil || len(pids) != 1 {
		t.Fatalf("Pids() = %v, %v; want the daemonised sleep", pids, err)
	}
	if err := g.Kill(); err != nil {
		t.Fatal(err)
	}
	if pids, _ := g.Pids(); len(pids) != 0 {
		t.Fatalf("after Kill, Pids() = %v", pids)
	}
	if ts, err := m.List(); err != nil || len(ts) != 1 || ts[0] != task {
		t.Errorf("List() = %v, %v; want [%v]", ts, err, task)
	}
	if err := g.Delete(); err != nil {
		t.Fatal(err)
	}
	if ts, err := m.List(); err != nil || len(ts) != 0 {
		t.Errorf("after Delete, List() = %v, %v", ts, err)
	}
}

func TestOOMKillIsSeen(t *testing.T) {
	m := manager(t)
	g, err := m.Create(Task{Job: 8, Name: "8.1.0"}, Limits{MemBytes: 32 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if g.OOMKilled() {
		t.Fatal("OOMKilled() before anything ran")
	}
	// A shell variable doubled until it passes 32 MB.
	cmd, out := inGroup(t, g, `x=0123456789abcdef; while :; do x="$x$x"; done`)
	if err := cmd.Wait(); err == nil {
		t.Fatalf("the hog exited cleanly: %s", out)
	}
	if !g.OOMKilled() {
		t.Error("OOMKilled() = false after the hog was killed")
	}
}

// readInt reads a cgroup file that holds one number.
func readInt(t *testing.T, path string) int64 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return n
}

// TestNoSwapUnlessAllowed: a rank's memory limit holds memory and swap
// together (v1's memsw, where the kernel accounts swap, with swappiness
// 0; v2's memory.swap.max 0), unless the node allows swap.
func TestNoSwapUnlessAllowed(t *testing.T) {
	m := manager(t)
	const limit = 64 << 20
	for i, allow := range []bool{false, true} {
		task := Task{Job: 10, Name: "10.1." + strconv.Itoa(i)}
		if _, err := m.Create(task, Limits{MemBytes: limit, AllowSwap: allow}); err != nil {
			t.Fatal(err)
		}
		if m.Mode() == V2 {
			swap, err := os.ReadFile(filepath.Join(DefaultMount, task.rel(m.root), "memory.swap.max"))
			if want := map[bool]string{false: "0", true: "max"}[allow]; err == nil && strings.TrimSpace(string(swap)) != want {
				t.Errorf("AllowSwap=%v: memory.swap.max = %q, want %s", allow, swap, want)
			}
			continue
		}
		dir := filepath.Join(DefaultMount, "memory", task.rel(m.root))
		if got := readInt(t, filepath.Join(dir, "memory.limit_in_bytes")); got != limit {
			t.Errorf("AllowSwap=%v: memory.limit_in_bytes = %d, want %d", allow, got, limit)
		}
		swappiness := readInt(t, filepath.Join(dir, "memory.swappiness"))
		if !allow && swappiness != 0 {
			t.Errorf("AllowSwap=false: memory.swappiness = %d, want 0", swappiness)
		}
		if _, err := os.Stat(filepath.Join(dir, "memory.memsw.limit_in_bytes")); err != nil {
			continue // no swap accounting on this kernel
		}
		memsw := readInt(t, filepath.Join(dir, "memory.memsw.limit_in_bytes"))
		if !allow && memsw != limit {
			t.Errorf("AllowSwap=false: memory.memsw.limit_in_bytes = %d, want %d", memsw, limit)
		}
		if allow && memsw <= limit {
			t.Errorf("AllowSwap=true: memory.memsw.limit_in_bytes = %d, want more than %d", memsw, limit)
		}
	}
}

// TestCapMemoryHoldsRanksWithoutALimit: the memory kept for the system
// is kept from a rank with no limit of its own too; the cap is on the
// root, over all the ranks.
func TestCapMemoryHoldsRanksWithoutALimit(t *testing.T) {
	m := manager(t)
	const limit = 32 << 20
	if err := m.CapMemory(limit); err != nil {
		t.Fatal(err)
	}
	g, err := m.Create(Task{Job: 11, Name: "11.1.0"}, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(DefaultMount, "memory", m.root, "memory.limit_in_bytes")
	if m.Mode() == V2 {
		file = filepath.Join(DefaultMount, m.root, "memory.max")
	}
	if got := readInt(t, file); got != limit {
		t.Errorf("%s = %d, want %d", file, got, limit)
	}
	cmd, out := inGroup(t, g, `x=0123456789abcdef; while :; do x="$x$x"; done`)
	if err := cmd.Wait(); err == nil {
		t.Fatalf("the hog exited cleanly under the root's cap: %s", out)
	}
}
