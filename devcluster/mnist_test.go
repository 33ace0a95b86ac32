package devcluster

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/loomhpc/loom/api"
	"github.com/loomhpc/loom/cli"
	"github.com/loomhpc/loom/internal/harness"
)

// TestMNISTTrainingJob submits examples/mnist/train.sbatch as a user
// would (through sbatch, 2 nodes × 2 ranks; the script starts the learner
// with srun, as on Slurm) and checks that the data-parallel learner
// reaches 97% test accuracy on real MNIST. It builds
// the learner and trains for about half a minute on two cores, so -short
// skips it; `make run` runs the same job.
func TestMNISTTrainingJob(t *testing.T) {
	if testing.Short() {
		t.Skip("trains MNIST for about 30 s")
	}
	dir := t.TempDir()
	for _, b := range []struct{ out, pkg string }{{"mnist", "../examples/mnist"}, {"loom", "../cmd/loom"}} {
		build := exec.Command("go", "build", "-o", filepath.Join(dir, "bin", b.out), b.pkg)
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", b.pkg, err, out)
		}
	}
	// The script calls srun: the agents provide it from a real loom binary.
	c, jobs := startClusterWith(t, Options{Agents: 2, CommandsBinary: filepath.Join(dir, "bin", "loom")})
	script, err := filepath.Abs("../examples/mnist/train.sbatch")
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("LOOM_ADDR", c.Addr())
	var out, errb bytes.Buffer
	if code := cli.Run(context.Background(), "sbatch", []string{"--parsable", "--chdir", dir, script}, strings.NewReader(""), &out, &errb); code != 0 {
		t.Fatalf("sbatch %s = %d: %s", script, code, errb.String())
	}
	id, err := strconv.ParseUint(strings.TrimSpace(out.String()), 10, 64)
	if err != nil {
		t.Fatalf("sbatch --parsable printed %q", out.String())
	}

	var j *api.Job
	harness.WaitFor(t, fmt.Sprintf("job %d to end", id), 5*time.Minute, func() bool {
		j = getJob(t, jobs, id)
		return j.State.Terminal() && !j.HoldsResources()
	})
	rank0, _ := os.ReadFile(filepath.Join(dir, fmt.Sprintf("mnist-%d.out", id)))
	if j.State != api.JobState_COMPLETED {
		t.Fatalf("job state = %s (%s), want COMPLETED; rank 0 printed:\n%s", j.State, j.Reason, rank0)
	}
	b, err := os.ReadFile(filepath.Join(dir, ".loom", fmt.Sprintf("job-%d", id), "result", "metrics.json"))
	if err != nil {
		t.Fatalf("no metrics: %v; rank 0 printed:\n%s", err, rank0)
	}
	var m struct {
		WorldSize    int     `json:"world_size"`
		TestAccuracy float64 `json:"test_accuracy"`
		ResumedFrom  int     `json:"resumed_from_step"`
	}
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("metrics.json: %v\n%s", err, b)
	}
	if m.WorldSize != 4 || m.ResumedFrom != 0 {
		t.Errorf("metrics.json = %s, want world_size 4 and no resume", b)
	}
	if m.TestAccuracy < 0.97 {
		t.Errorf("test accuracy = %.4f, want ≥ 0.97; rank 0 printed:\n%s", m.TestAccuracy, rank0)
	}
	if _, err := os.Stat(filepath.Join(dir, ".loom", fmt.Sprintf("job-%d", id), "checkpoint", "mnist.ckpt")); err != nil {
		t.Errorf("no checkpoint left behind: %v", err)
	}
}
