package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/loomhpc/loom/api"
	"github.com/loomhpc/loom/rpcclient"
)

const sbatchUsage = `Usage: sbatch [OPTIONS...] [SCRIPT [ARGS...]]
       sbatch [OPTIONS...] --wrap=COMMAND

Submits a batch job. Options come from #SBATCH lines at the top of SCRIPT
(before its first command), then from SBATCH_* environment variables, then
from the command line, each overriding the one before. Without SCRIPT or
--wrap the script is read from standard input. As in Slurm the job is an
allocation: the script runs once, on its first node, with the allocation's
SLURM_* variables, and srun inside it runs job steps on the allocation's
nodes (srun python train.py). --every-rank runs the script on every task
instead, as Loom did before job steps.

Options:
`

// sbatchEnvOptions are the SBATCH_* input variables Slurm reads, and the
// option each one sets.
var sbatchEnvOptions = []struct{ env, long string }{
	{"SBATCH_ACCOUNT", "account"},
	{"SBATCH_CONSTRAINT", "constraint"},
	{"SBATCH_CPUS_PER_GPU", "cpus-per-gpu"},
	{"SBATCH_EXCLUSIVE", "exclusive"},
	{"SBATCH_EXPORT", "export"},
	{"SBATCH_GPUS", "gpus"},
	{"SBATCH_GPUS_PER_NODE", "gpus-per-node"},
	{"SBATCH_GPUS_PER_TASK", "gpus-per-task"},
	{"SBATCH_GRES", "gres"},
	{"SBATCH_JOB_NAME", "job-name"},
	{"SBATCH_MEM_PER_CPU", "mem-per-cpu"},
	{"SBATCH_MEM_PER_GPU", "mem-per-gpu"},
	{"SBATCH_MEM_PER_NODE", "mem"},
	{"SBATCH_NO_REQUEUE", "no-requeue"},
	{"SBATCH_PARTITION", "partition"},
	{"SBATCH_QOS", "qos"},
	{"SBATCH_REQUEUE", "requeue"},
	{"SBATCH_RESERVATION", "reservation"},
	{"SBATCH_TIMELIMIT", "time"},
}

func runSbatch(ctx context.Context, e *env, args []string) int {
	o := &sbatchOpts{now: e.now}
	opts := sbatchOptions(o)
	cmdUses, pos, err := parseArgs(opts, args, parseConfig{stopAtArg: true})
	if err != nil {
		return e.fail(err)
	}
	for _, u := range cmdUses {
		if u.opt.long == "help" || u.opt.long == "usage" {
			var b strings.Builder
			b.WriteString(sbatchUsage)
			writeOptionHelp(&b, opts)
			io.WriteString(e.stdout, b.String())
			return 0
		}
	}
	spec, err := buildSpec(e, o, opts, cmdUses, pos)
	if err != nil {
		return e.fail(err)
	}
	if o.wait && spec.Array != "" {
		return e.fail(errors.New("--wait with --array is not supported yet: wait with squeue or sacct"))
	}
	if o.testOnly {
		return withClient(e, func(c *client) int { return testSubmit(ctx, e, c, spec) })
	}
	return withClient(e, func(c *client) int {
		id, err := submit(ctx, e, c, spec)
		if err != nil {
			return e.fail(err)
		}
		switch {
		case o.parsable:
			fmt.Fprintf(e.stdout, "%d\n", id)
		case !hasUse(cmdUses, "quiet"):
			fmt.Fprintf(e.stdout, "Submitted batch job %d\n", id)
		}
		if !o.wait {
			return 0
		}
		// As Slurm's: exit with the job's exit code, 1 for a job a signal
		// ended or that ended badly without one. A requeued job is
		// waited for through its next run.
		j, err := waitForJob(ctx, c, id, func(j *api.Job) bool { return j.GetState().Terminal() && !j.HoldsResources() })
		if err != nil {
			return e.fail(err)
		}
		code := int(j.GetExitCode())
		if j.GetState() != api.JobState_COMPLETED {
			e.errorf("job %d ended %s, exit code %s", id, stateName(j.GetState()), exitCode(j))
			if code == 0 || j.GetExitSignal() != 0 {
				code = 1
			}
		}
		return code
	})
}

func hasUse(uses []optUse, long string) bool {
	for _, u := range uses {
		if u.opt.long == long {
			return true
		}
	}
	return false
}

// buildSpec reads the script, applies its directives, the SBATCH_*
// variables and then the command-line options, and fills the rest of the
// spec from the submitting environment. Every error names the line or
// option at fault.
func buildSpec(e *env, o *sbatchOpts, opts []*option, cmdUses []optUse, pos []string) (*api.JobSpec, error) {
	cwd, err := e.getwd()
	if err != nil {
		return nil, fmt.Errorf("finding the current directory: %w", err)
	}

	var script, defaultName string
	switch {
	case hasUse(cmdUses, "wrap"):
		if len(pos) > 0 {
			return nil, fmt.Errorf("script arguments not permitted with --wrap option (got %q)", pos[0])
		}
		for _, u := range cmdUses {
			if u.opt.long == "wrap" {
				script = "#!/bin/sh\n" + u.value + "\n"
			}
		}
		defaultName = "wrap"
	case len(pos) > 0:
		path := pos[0]
		if len(pos) > 1 {
			return nil, fmt.Errorf("script arguments (%s) are not supported yet: set them in the script, or pass them with --export", strings.Join(pos[1:], " "))
		}
		if !filepath.IsAbs(path) {
			path = filepath.Join(cwd, path)
		}
		f, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("unable to open batch script %s: %w", pos[0], errors.Unwrap(err))
		}
		script, err = readScript(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", pos[0], err)
		}
		defaultName = filepath.Base(pos[0])
	default:
		script, err = readScript(e.stdin)
		if err != nil {
			return nil, fmt.Errorf("standard input: %w", err)
		}
		defaultName = "sbatch"
	}
	if err := checkScript(script); err != nil {
		return nil, err
	}

	// 1. #SBATCH lines (not for --wrap, whose script has none).
	if !hasUse(cmdUses, "wrap") {
		dirs, err := scanDirectives(script)
		if err != nil {
			return nil, err
		}
		for _, d := range dirs {
			where := fmt.Sprintf("line %d: ", d.line)
			uses, rest, err := parseArgs(opts, d.words, parseConfig{
				unknown: func(name string) { e.warnf("%sunknown option %s ignored", where, name) },
			})
			if err != nil {
				// Not %w: a script's bad line is no command-line usage error.
				return nil, fmt.Errorf("%s%v", where, err)
			}
			if len(rest) > 0 {
				// Slurm stops: "Invalid directive found in batch script".
				return nil, fmt.Errorf("%sinvalid directive: %q is not an option (write options as #SBATCH --name=value)", where, rest[0])
			}
			if err := applySbatch(e, uses, where); err != nil {
				return nil, err
			}
		}
	}
	// 2. SBATCH_* environment variables. As in Slurm, a memory option in
	// the script or on the command line drops the memory variables, since
	// the three memory options exclude one another.
	memOpts := []string{"mem", "mem-per-cpu", "mem-per-gpu"}
	s := &o.spec
	memGiven := s.MemPerNodeMb != 0 || s.MemPerCpuMb != 0 || s.MemPerGpuMb != 0 ||
		slices.ContainsFunc(memOpts, func(l string) bool { return hasUse(cmdUses, l) })
	for _, ev := range sbatchEnvOptions {
		v, ok := e.lookupEnv(ev.env)
		if !ok || (memGiven && slices.Contains(memOpts, ev.long)) {
			continue
		}
		o, _ := lookupLong(opts, ev.long)
		if o.arg == noArg {
			v = ""
		}
		if err := applySbatch(e, []optUse{{o, v}}, ev.env+": "); err != nil {
			return nil, err
		}
	}
	// 3. The command line.
	if err := applySbatch(e, cmdUses, ""); err != nil {
		return nil, err
	}

	spec := s
	spec.Script = script
	if spec.Name == "" {
		spec.Name = defaultName
	}
	return finishSpec(e, o, cwd)
}

// finishSpec fills what sbatch and srun take from the submitting shell —
// the working directory (--chdir relative to cwd) and the exported
// environment — and validates the spec.
func finishSpec(e *env, o *sbatchOpts, cwd string) (*api.JobSpec, error) {
	spec := &o.spec
	if n := uint32(len(spec.Nodelist)); n > 0 && spec.NodesMin <= n && (spec.NodesMax == 0 || spec.NodesMax >= n) {
		// As Slurm does, the node count grows to cover the list; a count
		// beyond it (more nodes than listed) is refused by ValidateSpec.
		spec.NodesMin, spec.NodesMax = n, n
	}
	if err := resolveNtasksPerGPU(o); err != nil {
		return nil, err
	}
	spec.WorkingDir = cwd
	if o.chdir != "" {
		spec.WorkingDir = o.chdir
		if !filepath.IsAbs(o.chdir) {
			spec.WorkingDir = filepath.Join(cwd, o.chdir)
		}
	}
	var err error
	spec.Env, err = exportEnv(o.export, e.environ)
	if err != nil {
		return nil, fmt.Errorf("--export=%s: %w", o.export, err)
	}
	if err := api.ValidateSpec(spec); err != nil {
		return nil, err
	}
	return spec, nil
}

// applySbatch applies uses in order; where ("line 4: ") prefixes
// messages. Recognised options Loom does not support are warned about.
func applySbatch(e *env, uses []optUse, where string) error {
	for _, u := range uses {
		if u.opt.long == "help" || u.opt.long == "usage" || (where != "" && u.opt.long == "wrap") {
			continue
		}
		err := u.opt.set(u.value)
		if errors.Is(err, errIgnored) {
			e.warnf("%s%s: %v", where, u.display(), err)
			continue
		}
		if err != nil {
			return fmt.Errorf("%s%s: %w", where, u.display(), err)
		}
	}
	return nil
}

// readScript reads a whole script, refusing one over api.MaxScriptBytes.
func readScript(r io.Reader) (string, error) {
	b, err := io.ReadAll(io.LimitReader(r, api.MaxScriptBytes+1))
	if err != nil {
		return "", err
	}
	if len(b) > api.MaxScriptBytes {
		return "", fmt.Errorf("batch script is over the %d byte limit", api.MaxScriptBytes)
	}
	return string(b), nil
}

// testSubmit asks the servers when and where spec would start (sbatch
// and srun --test-only) and prints Slurm's answer to stderr:
// "sbatch: Job 0 to start at 2026-12-06T01:02:03 using 8 processors on
// nodes gpu[01-02] in partition batch". Nothing is submitted.
func testSubmit(ctx context.Context, e *env, c *client, spec *api.JobSpec) int {
	host, err := e.hostname()
	if err != nil {
		return e.fail(fmt.Errorf("finding the host name: %w", err))
	}
	req := &api.SubmitRequest{Spec: spec, SubmitHost: host}
	var resp *api.TestSubmitResponse
	err = c.do(ctx, true, func(ctx context.Context, cc *rpcclient.Conn) error {
		resp, err = c.jobs(cc).TestSubmit(ctx, req)
		return err
	})
	if err != nil {
		return e.fail(err)
	}
	if resp.GetStartUnixMs() == 0 {
		fmt.Fprintf(e.stderr, "%s: Job 0 would be queued in partition %s but the scheduler plans no start for it now (reason %s)\n",
			e.name, resp.GetPartition(), orDefault(resp.GetReason(), "None"))
		return 0
	}
	fmt.Fprintf(e.stderr, "%s: Job 0 to start at %s using %d processors on nodes %s in partition %s\n",
		e.name, slurmTimestamp(resp.GetStartUnixMs(), e.loc), resp.GetCpus(), api.CompressHostlist(resp.GetNodes()), resp.GetPartition())
	return 0
}

// submit sends spec; the server makes the job the caller's. The
// idempotency token is made once, so that a retry on another server
// returns the same job.
func submit(ctx context.Context, e *env, c *client, spec *api.JobSpec) (uint64, error) {
	host, err := e.hostname()
	if err != nil {
		return 0, fmt.Errorf("finding the host name: %w", err)
	}
	req := &api.SubmitRequest{
		Spec:             spec,
		SubmitHost:       host,
		IdempotencyToken: e.newToken(),
	}
	var resp *api.SubmitResponse
	err = c.do(ctx, true, func(ctx context.Context, cc *rpcclient.Conn) error {
		resp, err = c.jobs(cc).Submit(ctx, req)
		return err
	})
	if err != nil {
		return 0, err
	}
	c.wrote(resp.GetIndex())
	return resp.GetJobId(), nil
}
