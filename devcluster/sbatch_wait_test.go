package devcluster

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/loomhpc/loom/cli"
)

// TestSbatchWaitFollowsTheJob: sbatch --wait returns only once the job has
// run to its end, with the job's exit code.
func TestSbatchWaitFollowsTheJob(t *testing.T) {
	c, _ := startCluster(t, 1)
	t.Setenv("LOOM_ADDR", c.Addr())
	t.Chdir(t.TempDir())
	var out, errOut bytes.Buffer
	start := time.Now()
	rc := cli.Run(context.Background(), "sbatch", []string{"--wait", "-N", "1", "--wrap", "sleep 1; exit 4"}, nil, &out, &errOut)
	if rc != 4 {
		t.Fatalf("sbatch --wait exited %d, want the job's 4 (stdout %q, stderr %q)", rc, out.String(), errOut.String())
	}
	if took := time.Since(start); took < time.Second {
		t.Fatalf("sbatch --wait returned after %s, before the 1 s job could end", took)
	}
}
