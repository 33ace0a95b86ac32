package devcluster

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/loomhpc/loom/api"
)

// TestExampleClusterConfig: loom dev --config examples/cluster.toml starts
// its ten nodes with the file's partitions; a job in the debug partition
// that asks for A100s lands on an A100 node, a job that names no partition
// gets debug's default time, and one over debug's MaxTime is refused.
func TestExampleClusterConfig(t *testing.T) {
	f, err := ReadConfig(filepath.Join("..", "examples", "cluster.toml"))
	if err != nil {
		t.Fatal(err)
	}
	if got := len(f.Cluster.GetPartitions()); got != 4 {
		t.Fatalf("%d partitions read, want 4", got)
	}
	if got := len(f.Cluster.GetSwitches()); got != 3 {
		t.Fatalf("switches %v, want leaf1, leaf2 and spine from the nodes' leaf_switch and spine_switch", f.Cluster.GetSwitches())
	}
	c, jobs := startClusterWith(t, Options{Cluster: f.Cluster, Nodes: f.Nodes})
	if got := len(c.Agents); got != 10 {
		t.Fatalf("%d agents, want 10", got)
	}
	if c.Server.State().Config() == nil {
		t.Fatal("the server holds no cluster configuration")
	}
	id := submit(t, jobs, &api.JobSpec{Partition: "debug", Constraint: "a100", GpusPerNode: 2, Argv: []string{"true"}})
	j := waitDone(t, jobs, id)
	if j.State != api.JobState_COMPLETED || len(j.Allocation.GetNodes()) != 1 || !strings.HasPrefix(j.Allocation.Nodes[0], "a100-") {
		t.Fatalf("job -p debug -C a100: %s on %v (%s), want COMPLETED on an a100- node", j.State, j.Allocation.GetNodes(), j.Reason)
	}
	id = submit(t, jobs, &api.JobSpec{Argv: []string{"true"}, Hold: true})
	if s := getJob(t, jobs, id).Spec; s.Partition != "debug" || s.TimeLimitS != 600 || s.Qos != "normal" {
		t.Errorf("job with no partition: partition %q, limit %d s, QoS %q; want debug, 600 (default_time 10:00), normal", s.Partition, s.TimeLimitS, s.Qos)
	}
	_, err = jobs.Submit(context.Background(), &api.SubmitRequest{Spec: &api.JobSpec{Argv: []string{"true"}, TimeLimitS: 3600, WorkingDir: t.TempDir()}})
	if err == nil || !strings.Contains(err.Error(), "over partition debug's MaxTime=30:00") {
		t.Errorf("a one-hour job in debug: %v, want refused over MaxTime=30:00", err)
	}
	id = submit(t, jobs, &api.JobSpec{Partition: "cpu", Argv: []string{"true"}})
	j = waitDone(t, jobs, id)
	if j.State != api.JobState_COMPLETED || !strings.HasPrefix(j.Allocation.GetNodes()[0], "cpu") || j.Spec.MemPerCpuMb != 2048 {
		t.Errorf("job -p cpu: %s on %v with %d MB per CPU, want COMPLETED on a cpu node with def_mem_per_cpu 2048", j.State, j.Allocation.GetNodes(), j.Spec.MemPerCpuMb)
	}
}

// TestReadConfigErrors: what loom dev --config refuses names the table
// and key.
func TestReadConfigErrors(t *testing.T) {
	tests := []struct {
		name, text, want string
	}{
		{"no nodes", "[[partition]]\nname = \"a\"\n", "no [[dev.nodes]] tables"},
		{"no count", "[[dev.nodes]]\nname = \"n\"\n", "[[dev.nodes]] #1: count = 0: want at least 1"},
		{"unknown key", "[[dev.nodes]]\ncount = 1\nname = \"n\"\ngpus = 3\n", `[[dev.nodes]]: unknown key "dev.nodes.gpus"`},
		{"unknown agent flag", "[[dev.nodes]]\ncount = 1\nname = \"n\"\nagent_args = [\"--bogus=1\"]\n", "agent_args: flag provided but not defined: -bogus"},
		{"bad partition time", "[[partition]]\nname = \"a\"\nmax_time = \"soon\"\n[[dev.nodes]]\ncount = 1\nname = \"n\"\n", `loom.toml:3: [[partition]] "a" max_time: time "soon"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "loom.toml")
			if err := os.WriteFile(path, []byte(tt.text), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := ReadConfig(path)
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), path) {
				t.Fatalf("ReadConfig = %v, want an error naming %s and %q", err, path, tt.want)
			}
		})
	}
}
