package exec

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/loomhpc/loom/agent/driver"
)

// TestIsolatedTmpFollowsThePartition: a job's partition's private_tmp
// decides over the node's --private-tmp, both ways.
func TestIsolatedTmpFollowsThePartition(t *testing.T) {
	d, _ := isolated(t, t.TempDir()) // the node's default: private
	no, yes := false, true
	tests := []struct {
		name       string
		node       bool
		job        *bool
		wantShared bool
	}{
		{"node default private", true, nil, false},
		{"partition says shared", true, &no, true},
		{"partition says private on a shared node", false, &yes, false},
		{"node default shared", false, nil, true},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d.iso.PrivateTmp = tt.node
			marker := "loom-tmpchoice-" + strconv.Itoa(os.Getpid()) + "-" + strconv.Itoa(i)
			t.Cleanup(func() { os.Remove("/tmp/" + marker) })
			s := spec(t, strconv.Itoa(50+i)+".1.0", "/bin/sh", "-c", "touch /tmp/"+marker)
			s.PrivateTmp = tt.job
			h, err := d.Start(context.Background(), s)
			if err != nil {
				t.Fatal(err)
			}
			if ex, err := h.Wait(ctx(t)); err != nil || ex.Code != 0 {
				t.Fatalf("Wait = %+v, %v", ex, err)
			}
			if err := h.Cleanup(context.Background()); err != nil {
				t.Fatal(err)
			}
			_, err = os.Stat("/tmp/" + marker)
			if shared := err == nil; shared != tt.wantShared {
				t.Errorf("node private=%v, job %v: the rank's /tmp is the host's = %v, want %v", tt.node, tt.job, shared, tt.wantShared)
			}
		})
	}
}

// TestPrivateTmpRefusedWhereNotMade: a job whose partition asks for a
// private /tmp is refused, not run with the shared one, on a node that
// cannot make it.
func TestPrivateTmpRefusedWhereNotMade(t *testing.T) {
	yes := true
	plain := New(t.TempDir(), nil)
	iso, _ := isolated(t, t.TempDir())
	iso.iso.PrivateTmpDir = ""
	for name, d := range map[string]*Driver{"no isolation": plain, "no private tmp dir": iso} {
		s := spec(t, "60.1.0", "/bin/true")
		s.PrivateTmp = &yes
		h, err := d.Start(context.Background(), s)
		if err == nil {
			h.Wait(ctx(t))
			t.Fatalf("%s: Start ran a job that asks for a private /tmp", name)
		}
		if !errors.Is(err, driver.ErrStart) || !strings.Contains(err.Error(), "private /tmp") {
			t.Errorf("%s: Start = %v, want ErrStart naming the private /tmp", name, err)
		}
	}
}

// TestIsolatedSwapFollowsThePartition: a job's partition's allow_swap
// decides over the node's --allow-swap for its rank's memory group.
func TestIsolatedSwapFollowsThePartition(t *testing.T) {
	d, _ := isolated(t, t.TempDir())
	no, yes := false, true
	const memMB = 64
	for i, tt := range []struct {
		node      bool
		job       *bool
		wantSwaps bool
	}{
		{true, &no, false},
		{false, &yes, true},
		{false, nil, false},
	} {
		d.iso.AllowSwap = tt.node
		s := spec(t, strconv.Itoa(70+i)+".1.0", "/bin/true")
		s.MemMB, s.AllowSwap = memMB, tt.job
		h, err := d.Start(context.Background(), s)
		if err != nil {
			t.Fatal(err)
		}
		if ex, err := h.Wait(ctx(t)); err != nil || ex.Code != 0 {
			t.Fatalf("Wait = %+v, %v", ex, err)
		}
		swaps := groupSwaps(t, h.(*cgHandle).g.ProcsFiles(), memMB<<20)
		if err := h.Cleanup(context.Background()); err != nil {
			t.Fatal(err)
		}
		if swaps != tt.wantSwaps {
			t.Errorf("node allow_swap=%v, job %v: the rank may swap = %v, want %v", tt.node, tt.job, swaps, tt.wantSwaps)
		}
	}
}

// groupSwaps reports whether the group whose cgroup.procs files are procs
// lets its processes swap beyond limit: v1's memsw above the limit (or a
// swappiness above 0 where swap is not accounted), v2's memory.swap.max
// not 0.
func groupSwaps(t *testing.T, procs []string, limit int64) bool {
	t.Helper()
	for _, p := range procs {
		dir := filepath.Dir(p)
		if b, err := os.ReadFile(filepath.Join(dir, "memory.swap.max")); err == nil {
			return strings.TrimSpace(string(b)) != "0"
		}
		if b, err := os.ReadFile(filepath.Join(dir, "memory.memsw.limit_in_bytes")); err == nil {
			n, _ := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
			return n > limit
		}
		if b, err := os.ReadFile(filepath.Join(dir, "memory.swappiness")); err == nil {
			return strings.TrimSpace(string(b)) != "0"
		}
	}
	t.Fatalf("no memory controller among %v", procs)
	return false
}
