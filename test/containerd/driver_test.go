//go:build e2e

package containerd

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/loomhpc/loom/agent/driver"
	ctrdriver "github.com/loomhpc/loom/agent/driver/containerd"
	"github.com/loomhpc/loom/test/cluster"
)

// newDriver is the containerd driver as an agent named node would have it.
func newDriver(t *testing.T, node string) *ctrdriver.Driver {
	t.Helper()
	requireContainerd(t)
	d, err := ctrdriver.New(ctrdriver.Config{Node: node, StateDir: t.TempDir(), Logger: []string{cluster.Binary(t), "containerd-logger"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// TestRootfsDirectoryAndSeparateStderr runs a rank from a root filesystem
// directory (no image) with stdout and stderr in separate files.
func TestRootfsDirectoryAndSeparateStderr(t *testing.T) {
	d := newDriver(t, "drvtest1")
	dir := cluster.OpenDir(t, "loom-rootfs-")
	rootfs := filepath.Join(dir, "rootfs")
	os.MkdirAll(rootfs, 0o755)
	buildProbe(t, filepath.Join(rootfs, "probe"))
	spec := driver.TaskSpec{ID: "1.1.0", Argv: []string{"/probe", "ls", "/nonexistent"}, Env: []string{"PATH=/"}, Dir: "/",
		UID: uid, GID: gid, Stdout: filepath.Join(dir, "out"), Stderr: filepath.Join(dir, "err"), Image: rootfs, MemMB: 16}
	h, err := d.Start(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ex, err := h.Wait(ctx)
	if err != nil || ex != (driver.Exit{}) {
		t.Errorf("Wait() = %+v, %v, want a clean exit", ex, err)
	}
	if err := h.Cleanup(ctx); err != nil {
		t.Error(err)
	}
	if out := readFile(t, spec.Stdout); !strings.Contains(out, "/nonexistent open /nonexistent: no such file") {
		t.Errorf("stdout = %q, want the probe's listing error", out)
	}
	if b, err := os.ReadFile(spec.Stderr); err != nil || len(b) != 0 {
		t.Errorf("stderr file = %q, %v, want it created and empty", b, err)
	}

	// Output where the user may not write: the rank does not start, and
	// says why.
	locked := filepath.Join(dir, "locked")
	os.Mkdir(locked, 0o755)
	spec.ID, spec.Stdout, spec.Stderr = "1.1.1", filepath.Join(locked, "out"), filepath.Join(locked, "out")
	if _, err := d.Start(context.Background(), spec); !errors.Is(err, driver.ErrStart) || !strings.Contains(err.Error(), "Permission denied") {
		t.Errorf("Start with an unwritable output = %v, want %v saying Permission denied", err, driver.ErrStart)
	}
}

// TestRecoverRemovesUnknownContainers starts two ranks, then recovers as
// a restarted agent that knows only one: the other is killed and removed,
// and ranks of another node are not touched.
func TestRecoverRemovesUnknownContainers(t *testing.T) {
	d := newDriver(t, "drv-test.2")
	other := newDriver(t, "drvtest3")
	dir := t.TempDir()
	rootfs := filepath.Join(dir, "rootfs")
	os.MkdirAll(rootfs, 0o755)
	buildProbe(t, filepath.Join(rootfs, "probe"))
	spec := func(id string) driver.TaskSpec {
		return driver.TaskSpec{ID: id, Argv: []string{"/probe", "sleep", "600"}, Dir: "/", UID: 0, GID: 0,
			Stdout: filepath.Join(dir, id+".out"), Stderr: filepath.Join(dir, id+".out"), Image: rootfs}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var started []driver.Handle
	for _, s := range []struct {
		d  *ctrdriver.Driver
		id string
	}{{d, "5.1.0"}, {d, "5.1.1"}, {other, "5.1.2"}} {
		h, err := s.d.Start(ctx, spec(s.id))
		if err != nil {
			t.Fatal(err)
		}
		started = append(started, h)
	}
	t.Cleanup(func() {
		for _, h := range started {
			h.Signal(9)
			h.Wait(context.Background())
			h.Cleanup(context.Background())
		}
	})
	hs, err := d.Recover(ctx, []string{"5.1.0", "9.9.9"})
	if err != nil {
		t.Fatal(err)
	}
	if len(hs) != 1 || hs["5.1.0"] == nil {
		t.Fatalf("Recover() = %v, want a handle for 5.1.0 only", hs)
	}
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	if ex, err := started[1].Wait(wctx); err != nil || ex.Signal != 9 {
		t.Errorf("unknown rank: Wait() = %+v, %v, want killed by signal 9", ex, err)
	}
	short, scancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer scancel()
	if _, err := started[2].Wait(short); err == nil {
		t.Errorf("another node's rank ended on this node's Recover")
	}
	// The recovered handle controls the running rank.
	if _, err := driver.Stop(ctx, hs["5.1.0"], time.Second); err != nil {
		t.Errorf("Stop(recovered rank): %v", err)
	}
	if err := hs["5.1.0"].Cleanup(ctx); err != nil {
		t.Error(err)
	}
}
