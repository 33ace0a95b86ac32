package devcluster

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/loomhpc/loom/api"
	"github.com/loomhpc/loom/api/apirpc"
	"github.com/loomhpc/loom/cli"
	"github.com/loomhpc/loom/internal/harness"
	"github.com/loomhpc/loom/rankenv"
)

// RunScript submits a batch script through the real sbatch command, follows
// every rank's output to the end with loom logs, prints sacct's line for
// the job and returns its final state. It is `make run`'s path, the same
// one a user takes from a shell.
func (c *Cluster) RunScript(ctx context.Context, script string, stdout, stderr io.Writer) (api.JobState, error) {
	os.Setenv("LOOM_ADDR", c.Addr())
	var out bytes.Buffer
	if rc := cli.Run(ctx, "sbatch", []string{"--parsable", script}, os.Stdin, &out, stderr); rc != 0 {
		return 0, fmt.Errorf("sbatch %s failed", script)
	}
	idText := strings.TrimSpace(strings.SplitN(out.String(), ";", 2)[0])
	id, err := strconv.ParseUint(idText, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("sbatch printed %q, not a job id", out.String())
	}
	fmt.Fprintf(stdout, "Submitted batch job %d\n", id)

	conn, err := harness.Dial(c.Addr())
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	jobs := apirpc.NewJobServiceClient(conn)
	// Follow output once the gang is placed; before that there is none.
	if _, err := waitJob(ctx, jobs, id, func(j *api.Job) bool { return j.Allocation != nil || j.State.Terminal() }); err != nil {
		return 0, err
	}
	cli.Run(ctx, "logs", []string{"-f", idText}, os.Stdin, stdout, stderr)
	j, err := waitJob(ctx, jobs, id, func(j *api.Job) bool { return j.State.Terminal() && !j.HoldsResources() })
	if err != nil {
		return 0, err
	}
	fmt.Fprintln(stdout)
	cli.Run(ctx, "sacct", []string{"-j", idText}, os.Stdin, stdout, stderr)
	printMetrics(stdout, j)
	return j.State, nil
}

// printMetrics prints the metrics.json a learner left in the job's result
// directory (LOOM_RESULT_DIR), one key=value per field, so that `make run`
// ends with the figures of the run (examples/mnist writes its final test
// accuracy there). Jobs without one print nothing.
func printMetrics(w io.Writer, j *api.Job) {
	dir := j.GetSpec().GetEnv()[rankenv.LoomResultDir]
	if dir == "" {
		dir = filepath.Join(j.GetSpec().GetWorkingDir(), ".loom", "job-"+strconv.FormatUint(j.GetId(), 10), "result")
	}
	path := filepath.Join(dir, "metrics.json")
	// Every dev cluster numbers jobs from 1, so the directory may hold an
	// earlier cluster's job 1: only a file written during this job counts.
	if fi, err := os.Stat(path); err != nil || fi.ModTime().UnixMilli() < j.GetStartUnixMs() {
		return
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		fmt.Fprintf(w, "%s: %v\n", path, err)
		return
	}
	fmt.Fprintf(w, "\nresult %s:\n", path)
	for _, k := range slices.Sorted(maps.Keys(m)) {
		fmt.Fprintf(w, "  %s=%v\n", k, m[k])
	}
}

func waitJob(ctx context.Context, jobs apirpc.JobServiceClient, id uint64, done func(*api.Job) bool) (*api.Job, error) {
	for {
		resp, err := jobs.GetJob(ctx, &api.GetJobRequest{JobId: id})
		if err != nil {
			return nil, err
		}
		if done(resp.Job) {
			return resp.Job, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}
