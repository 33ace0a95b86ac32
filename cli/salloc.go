package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/loomhpc/loom/api"
	"github.com/loomhpc/loom/rpcclient"
)

const sallocUsage = `Usage: salloc [OPTIONS...] [COMMAND [ARGS...]]

Obtains an allocation, then runs COMMAND (default: $SHELL) here, on the
submit host, with the allocation's SLURM_* variables; srun inside it runs
job steps on the allocation's nodes. The allocation ends when COMMAND
exits, and salloc exits with its exit status. The resource options are
sbatch's.

Options:
`

// sallocDropped are sbatch options that mean nothing for salloc.
var sallocDropped = map[string]bool{"wrap": true, "parsable": true, "wait": true, "every-rank": true, "array": true,
	"output": true, "error": true, "open-mode": true}

func runSalloc(ctx context.Context, e *env, args []string) int {
	o := &sbatchOpts{now: e.now}
	var opts []*option
	for _, op := range sbatchOptions(o) {
		if !sallocDropped[op.long] {
			opts = append(opts, op)
		}
	}
	uses, pos, err := parseArgs(opts, args, parseConfig{stopAtArg: true})
	if err != nil {
		return e.fail(err)
	}
	if hasUse(uses, "help") || hasUse(uses, "usage") {
		return printHelp(e, sallocUsage, opts)
	}
	if err := applySbatch(e, uses, ""); err != nil {
		return e.fail(err)
	}
	if len(pos) == 0 {
		shell := e.getenv("SHELL")
		if shell == "" {
			shell = "/bin/sh"
		}
		pos = []string{shell}
	}
	cwd, err := e.getwd()
	if err != nil {
		return e.fail(fmt.Errorf("finding the current directory: %w", err))
	}
	o.spec.Interactive = true
	if o.spec.Name == "" {
		o.spec.Name = filepath.Base(pos[0])
	}
	spec, err := finishSpec(e, o, cwd)
	if err != nil {
		return e.fail(err)
	}
	if o.testOnly {
		return withClient(e, func(c *client) int { return testSubmit(ctx, e, c, spec) })
	}
	return withClient(e, func(c *client) int {
		id, err := submit(ctx, e, c, spec)
		if err != nil {
			return e.fail(err)
		}
		fmt.Fprintf(e.stderr, "salloc: Pending job allocation %d\n", id)
		j, err := waitForJob(ctx, c, id, func(j *api.Job) bool {
			return j.GetState() == api.JobState_RUNNING || j.GetState().Terminal()
		})
		if err != nil {
			if ctx.Err() != nil {
				return relinquish(e, c, id, 130)
			}
			return e.fail(err)
		}
		if j.GetState().Terminal() {
			return e.errorf("job allocation %d ended %s before it was granted: %s", id, stateName(j.GetState()), j.GetReason())
		}
		fmt.Fprintf(e.stderr, "salloc: Granted job allocation %d\n", id)
		code := runAllocated(ctx, e, c, j, pos, cwd)
		return relinquish(e, c, id, code)
	})
}

// relinquish ends allocation id with code, which salloc then exits with.
func relinquish(e *env, c *client, id uint64, code int) int {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	err := c.do(ctx, true, func(ctx context.Context, cc *rpcclient.Conn) error {
		_, err := c.jobs(cc).CompleteAllocation(ctx, &api.CompleteAllocationRequest{JobId: id, ExitCode: int32(code)})
		return err
	})
	if err != nil && !strings.Contains(errorMessage(err), "already") {
		// The allocation may have ended on its own (time limit, scancel).
		e.warnf("ending job allocation %d: %s", id, messageAbout(err, fmt.Sprintf("job %d: ", id)))
	}
	fmt.Fprintf(e.stderr, "salloc: Relinquishing job allocation %d\n", id)
	return code
}

// runAllocated runs argv on this host with allocation j's environment and
// returns its exit status. Should the allocation end first (scancel, the
// time limit) the command is sent SIGHUP, as Slurm's salloc does.
func runAllocated(ctx context.Context, e *env, c *client, j *api.Job, argv []string, cwd string) int {
	cmd := osexec.Command(argv[0], argv[1:]...)
	cmd.Dir = cwd
	cmd.Env = append(append([]string(nil), e.environ...), allocationEnv(j, c.addrs)...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = e.stdin, e.stdout, e.stderr
	if err := cmd.Start(); err != nil {
		return e.errorf("%s: %v", argv[0], err)
	}
	done := make(chan struct{})
	go func() {
		// Ctrl-C reaches the command itself (same terminal); salloc only
		// watches the allocation.
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
			}
			cur, err := c.getJob(context.WithoutCancel(ctx), j.GetId())
			if err == nil && cur.GetState().Terminal() {
				fmt.Fprintf(e.stderr, "salloc: Job allocation %d has been revoked.\n", j.GetId())
				_ = cmd.Process.Signal(syscall.SIGHUP)
				return
			}
		}
	}()
	err := cmd.Wait()
	close(done)
	var ee *osexec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal())
		}
		return ee.ExitCode()
	}
	return e.errorf("%s: %v", argv[0], err)
}

// allocationEnv is what a salloc command sees of allocation j: Slurm's
// allocation variables and LOOM_ADDR for the srun it runs.
func allocationEnv(j *api.Job, servers []string) []string {
	a := j.GetAllocation()
	var tasks, cpus []int
	for _, n := range a.GetNodes() {
		t, c := 0, 0
		for _, r := range a.GetRanks() {
			if r.GetNode() == n {
				t++
				c += int(r.GetCpus())
			}
		}
		tasks, cpus = append(tasks, t), append(cpus, c)
	}
	id := strconv.FormatUint(j.GetId(), 10)
	nodes := api.CompressHostlist(a.GetNodes())
	host, _ := os.Hostname()
	env := []string{
		"SLURM_JOB_ID=" + id, "SLURM_JOBID=" + id, "SLURM_JOB_NAME=" + j.GetSpec().GetName(),
		"SLURM_JOB_NODELIST=" + nodes, "SLURM_NODELIST=" + nodes,
		"SLURM_JOB_NUM_NODES=" + strconv.Itoa(len(a.GetNodes())), "SLURM_NNODES=" + strconv.Itoa(len(a.GetNodes())),
		"SLURM_NTASKS=" + strconv.Itoa(len(a.GetRanks())), "SLURM_NPROCS=" + strconv.Itoa(len(a.GetRanks())),
		"SLURM_TASKS_PER_NODE=" + api.SlurmCounts(tasks), "SLURM_JOB_CPUS_PER_NODE=" + api.SlurmCounts(cpus),
		"SLURM_SUBMIT_DIR=" + j.GetSpec().GetWorkingDir(), "SLURM_SUBMIT_HOST=" + host,
		"SLURM_JOB_PARTITION=" + j.GetSpec().PartitionOf(), "SLURM_CLUSTER_NAME=loom",
		"LOOM_ADDR=" + strings.Join(servers, ","),
	}
	if n := j.GetSpec().GetNtasksPerNode(); n != 0 {
		env = append(env, "SLURM_NTASKS_PER_NODE="+strconv.Itoa(int(n)))
	}
	if n := j.GetSpec().GetCpusPerTask(); n != 0 {
		env = append(env, "SLURM_CPUS_PER_TASK="+strconv.Itoa(int(n)))
	}
	return env
}
