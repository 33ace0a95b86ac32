package e2e

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/loomhpc/loom/api"
	"github.com/loomhpc/loom/devcluster"
	"github.com/loomhpc/loom/internal/harness"
	"github.com/loomhpc/loom/server"
)

// Options shapes one run of the benchmark.
type Options struct {
	Agents  int // simulated 8-GPU nodes
	Jobs    int // single-node jobs submitted in the first burst
	Clients int // sbatch processes running at once
	Gang    int // nodes of each gang job; the gang burst has Jobs/Gang of them
	Array   int // tasks of the one job array
	Queue   int // held jobs in the queue while squeue, sacct and sbatch are timed
	Repeats int // runs of each command timed with a full queue; the median is printed
	// Bin is the directory holding the Slurm commands (sbatch, squeue,
	// sacct, links to loom); default the running executable's.
	Bin string
	// Log, when set, receives progress lines and the cluster's warnings.
	Log io.Writer
}

// maxArray is the most tasks one sbatch --array may ask for.
const maxArray = api.MaxArrayTasks - 1

// Main runs the benchmark with args (without "bench e2e") until it ends
// or ctx is done (loom's interrupt), stopping the cluster either way.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("loom bench e2e", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o := Options{Log: stderr}
	fs.IntVar(&o.Agents, "agents", 64, "simulated 8-GPU nodes (agents in this process)")
	fs.IntVar(&o.Jobs, "jobs", 2000, "single-node jobs (sbatch --wrap true) in the first burst")
	fs.IntVar(&o.Clients, "clients", 4, "sbatch processes running at once")
	fs.IntVar(&o.Gang, "gang", 4, "nodes of each gang job (the gang burst has jobs/gang of them; 0 skips it)")
	fs.IntVar(&o.Array, "array", 1000, "tasks of the job array (0 skips it)")
	fs.IntVar(&o.Queue, "queue", 10000, "held jobs queued while squeue, sacct and sbatch are timed (0 skips it)")
	fs.IntVar(&o.Repeats, "repeats", 5, "runs of each command timed against the full queue")
	fs.StringVar(&o.Bin, "bin", "", "directory of sbatch, squeue and sacct (default: the loom binary's)")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile of the cluster (server and agents, this process) to this file")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "loom bench e2e: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			fmt.Fprintln(stderr, "loom bench e2e:", err)
			return 1
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(stderr, "loom bench e2e:", err)
			return 1
		}
		defer pprof.StopCPUProfile()
	}
	if err := Run(ctx, o, stdout); err != nil {
		fmt.Fprintln(stderr, "loom bench e2e:", err)
		return 1
	}
	return 0
}

// Run starts the cluster, runs every phase o asks for and prints the
// figures to stdout.
func Run(ctx context.Context, o Options, stdout io.Writer) error {
	if err := o.check(); err != nil {
		return err
	}
	if o.Bin == "" {
		self, err := os.Executable()
		if err != nil {
			return err
		}
		o.Bin = filepath.Dir(self)
	}
	for _, c := range []string{"sbatch", "squeue", "sacct"} {
		if _, err := os.Stat(filepath.Join(o.Bin, c)); err != nil {
			return fmt.Errorf("--bin: %w (make build puts the Slurm commands beside bin/loom)", err)
		}
	}
	logw := o.Log
	if logw == nil {
		logw = io.Discard
	}
	work, err := os.MkdirTemp("", "loom-bench-e2e-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	addr, err := harness.FreeAddr("")
	if err != nil {
		return err
	}
	dev := devcluster.Options{
		Agents: o.Agents, Profile: "dgx-h100", RPCAddr: addr,
		DataDir: filepath.Join(work, "cluster"),
		Logger:  slog.New(slog.NewTextHandler(logw, &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
	// As the Slurm baseline raises MaxJobCount and MaxArraySize (bench/slurm),
	// so the bursts and the held queue fit beside each other: finished
	// jobs stay in the live state for min_job_age. A --queue of 100,000
	// raises it further.
	lim := server.DefaultLimits()
	lim.MaxJobCount = uint32(max(40000, 2*o.Jobs+o.Array+o.Queue+2*o.Repeats+1))
	lim.MaxArraySize = 10001
	dev.Limits = &lim
	if loom := filepath.Join(o.Bin, "loom"); fileExists(loom) {
		dev.CommandsBinary = loom
	}
	c, err := devcluster.Start(ctx, dev)
	if err != nil {
		return err
	}
	defer c.Close()
	b := &bench{o: o, c: c, out: stdout, log: logw, dir: filepath.Join(work, "jobs")}
	if err := os.Mkdir(b.dir, 0o755); err != nil {
		return err
	}
	b.env = append(os.Environ(), "LOOM_ADDR="+c.Addr())
	fmt.Fprintf(stdout, "agents=%d jobs=%d clients=%d gang=%d array=%d queue=%d fsync=on\n",
		o.Agents, o.Jobs, o.Clients, o.Gang, o.Array, o.Queue)

	if err := b.burst(ctx, "", o.Jobs, []string{"--wrap", "true"}); err != nil {
		return err
	}
	if n := o.Jobs / max(o.Gang, 1); o.Gang > 0 && n > 0 {
		args := []string{"-N", strconv.Itoa(o.Gang), "--ntasks-per-node", "1", "--wrap", "true"}
		if err := b.burst(ctx, fmt.Sprintf("gang%d_", o.Gang), n, args); err != nil {
			return err
		}
	}
	if o.Array > 0 {
		if err := b.array(ctx); err != nil {
			return err
		}
	}
	if o.Queue > 0 {
		if err := b.listings(ctx); err != nil {
			return err
		}
	}
	return nil
}

func (o Options) check() error {
	switch {
	case o.Agents < 1:
		return fmt.Errorf("--agents=%d: need at least 1", o.Agents)
	case o.Jobs < 1:
		return fmt.Errorf("--jobs=%d: need at least 1", o.Jobs)
	case o.Clients < 1:
		return fmt.Errorf("--clients=%d: need at least 1", o.Clients)
	case o.Gang < 0 || o.Gang > o.Agents:
		return fmt.Errorf("--gang=%d: must be between 0 and --agents (%d)", o.Gang, o.Agents)
	case o.Array < 0 || o.Array > maxArray:
		return fmt.Errorf("--array=%d: must be between 0 and %d", o.Array, maxArray)
	case o.Queue < 0:
		return fmt.Errorf("--queue=%d: must not be negative", o.Queue)
	case o.Repeats < 1:
		return fmt.Errorf("--repeats=%d: need at least 1", o.Repeats)
	}
	return nil
}

// bench is one run's cluster and the environment of its commands.
type bench struct {
	o   Options
	c   *devcluster.Cluster
	out io.Writer
	log io.Writer
	env []string
	dir string // the commands' working directory: jobs' output lands here
}

// submitted is one sbatch: when it was started, how long it took, and
// the job id it printed.
type submitted struct {
	at   time.Time
	took time.Duration
	id   uint64
}

// sbatch runs the sbatch command with args and returns the job id it
// printed (--parsable).
func (b *bench) sbatch(ctx context.Context, args ...string) (submitted, error) {
	s := submitted{at: time.Now()}
	out, err := b.command(ctx, "sbatch", append([]string{"--parsable"}, args...)...)
	s.took = time.Since(s.at)
	if err != nil {
		return s, err
	}
	id, _, _ := strings.Cut(strings.TrimSpace(string(out)), ";")
	if s.id, err = strconv.ParseUint(id, 10, 64); err != nil {
		return s, fmt.Errorf("sbatch printed %q, not a job id", out)
	}
	return s, nil
}

// command runs one of the Slurm commands and returns its output.
func (b *bench) command(ctx context.Context, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(b.o.Bin, name), args...)
	cmd.Env, cmd.Dir = b.env, b.dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}

// burst submits n jobs with sbatch args from o.Clients processes at once,
// waits until every one has ended, and prints the figures under prefix.
func (b *bench) burst(ctx context.Context, prefix string, n int, args []string) error {
	fmt.Fprintf(b.log, "e2e: %ssubmitting %d jobs (sbatch %s)\n", prefix, n, strings.Join(args, " "))
	subs := make([]submitted, n)
	errs := make([]error, n)
	next := make(chan int)
	var wg sync.WaitGroup
	for range b.o.Clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				subs[i], errs[i] = b.sbatch(ctx, args...)
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	jobs, err := b.waitEnded(ctx, subs)
	if err != nil {
		return err
	}
	return b.report(prefix, subs, jobs)
}

// array submits one job array of o.Array tasks and prints its figures
// under array_: every task counts as submitted when sbatch started.
func (b *bench) array(ctx context.Context) error {
	fmt.Fprintf(b.log, "e2e: array of %d tasks\n", b.o.Array)
	s, err := b.sbatch(ctx, "--array", fmt.Sprintf("0-%d", b.o.Array-1), "--wrap", "true")
	if err != nil {
		return err
	}
	subs := make([]submitted, b.o.Array)
	for i := range subs {
		subs[i] = s
	}
	jobs, err := b.waitArray(ctx, s)
	if err != nil {
		return err
	}
	return b.report("array_", subs, jobs)
}

// waitEnded waits until the job of each submit has ended and returns
// them in the same order.
func (b *bench) waitEnded(ctx context.Context, subs []submitted) ([]*api.Job, error) {
	jobs := make([]*api.Job, len(subs))
	err := harness.Wait(ctx, fmt.Sprintf("%d jobs to end", len(subs)), 20*time.Minute, func() bool {
		v := b.c.Server.State()
		for i, s := range subs {
			j := v.Job(s.id)
			if j == nil || !j.State.Terminal() {
				return false
			}
			jobs[i] = j
		}
		return true
	})
	return jobs, err
}

// waitArray waits until every task of the array sbatch s submitted has
// ended and returns them.
func (b *bench) waitArray(ctx context.Context, s submitted) ([]*api.Job, error) {
	var jobs []*api.Job
	err := harness.Wait(ctx, fmt.Sprintf("%d array tasks to end", b.o.Array), 20*time.Minute, func() bool {
		v := b.c.Server.State()
		jobs = jobs[:0]
		// The tasks have consecutive ids from the first.
		for id := s.id; id < s.id+uint64(b.o.Array); id++ {
			j := v.Job(id)
			if j == nil || j.ArrayJobId != s.id || !j.State.Terminal() {
				return false
			}
			jobs = append(jobs, j)
		}
		return true
	})
	return jobs, err
}

// report prints submit latencies, submit-to-start latencies (from the
// moment sbatch was started to the moment the agent started the batch
// script) and the rate at which the burst drained (jobs over the time
// from the first sbatch to the last job's end).
func (b *bench) report(prefix string, subs []submitted, jobs []*api.Job) error {
	var submit, start []time.Duration
	first := subs[0].at
	var last int64
	for i, j := range jobs {
		if j.State != api.JobState_COMPLETED {
			out, _ := os.ReadFile(filepath.Join(b.dir, fmt.Sprintf("slurm-%d.out", j.Id)))
			return fmt.Errorf("job %d ended %s: %s; its output: %q", j.Id, j.State, j.Reason, out)
		}
		s := subs[i]
		if i == 0 || subs[i-1].id != s.id {
			submit = append(submit, s.took)
		}
		if s.at.Before(first) {
			first = s.at
		}
		started := batchStart(j)
		start = append(start, max(0, time.Duration(started-s.at.UnixMilli())*time.Millisecond))
		last = max(last, j.EndUnixMs)
	}
	slices.Sort(submit)
	slices.Sort(start)
	drain := time.Duration(last-first.UnixMilli()) * time.Millisecond
	fmt.Fprintf(b.out, "%sjobs=%d\n", prefix, len(jobs))
	fmt.Fprintf(b.out, "%ssubmit_p50_ms=%.1f\n", prefix, ms(pct(submit, 0.50)))
	fmt.Fprintf(b.out, "%ssubmit_p99_ms=%.1f\n", prefix, ms(pct(submit, 0.99)))
	fmt.Fprintf(b.out, "%sstart_p50_ms=%.1f\n", prefix, ms(pct(start, 0.50)))
	fmt.Fprintf(b.out, "%sstart_p99_ms=%.1f\n", prefix, ms(pct(start, 0.99)))
	fmt.Fprintf(b.out, "%sjobs_per_s=%.1f\n", prefix, float64(len(jobs))/max(drain.Seconds(), 0.001))
	b.reportStages(prefix, jobs)
	return nil
}

// stages are the server's and the agents' shares of a job's life, from
// the times the state records: the submit's commit (the leader's clock
// as it made the entry), the placement's commit, the batch script's start
// and end on its agent, the end's commit, and the release of the job's
// last slot on its node (its resources are free once that is committed).
// Server and agents run in this one process, so their clocks agree.
var stages = []struct {
	key      string
	from, to func(j *api.Job) int64
}{
	{"submit_commit_to_start", func(j *api.Job) int64 { return j.SubmitUnixMs }, batchStart},
	{"submit_commit_to_place", func(j *api.Job) int64 { return j.SubmitUnixMs }, func(j *api.Job) int64 { return j.StartUnixMs }},
	{"place_to_start", func(j *api.Job) int64 { return j.StartUnixMs }, batchStart},
	{"exit_to_end_commit", batchEnd, func(j *api.Job) int64 { return j.EndUnixMs }},
	{"end_commit_to_free", func(j *api.Job) int64 { return j.EndUnixMs }, slotsEnd},
}

// reportStages prints the median and 99th percentile of each stage over
// jobs, in milliseconds; a stage a job has no times for is left out.
func (b *bench) reportStages(prefix string, jobs []*api.Job) {
	for _, st := range stages {
		var d []time.Duration
		for _, j := range jobs {
			from, to := st.from(j), st.to(j)
			if from == 0 || to == 0 {
				continue
			}
			d = append(d, max(0, time.Duration(to-from)*time.Millisecond))
		}
		slices.Sort(d)
		fmt.Fprintf(b.out, "%s%s_p50_ms=%.1f\n", prefix, st.key, ms(pct(d, 0.50)))
		fmt.Fprintf(b.out, "%s%s_p99_ms=%.1f\n", prefix, st.key, ms(pct(d, 0.99)))
	}
}

// batchEnd is when j's batch script ended on its agent, 0 if unknown.
func batchEnd(j *api.Job) int64 {
	for _, st := range j.Steps {
		if st.Id != api.StepBatch {
			continue
		}
		for _, t := range st.GetAllocation().GetTasks() {
			return t.EndedUnixMs
		}
	}
	return 0
}

// slotsEnd is when the last of j's allocation slots was released on its
// node, 0 if unknown.
func slotsEnd(j *api.Job) int64 {
	var last int64
	for _, t := range j.GetAllocation().GetTasks() {
		if t.EndedUnixMs == 0 {
			return 0
		}
		last = max(last, t.EndedUnixMs)
	}
	return last
}

// batchStart is when the agent started j's batch script, or when the
// scheduler placed it if no agent reported the start. A script that ends
// at once may have its end committed before its start report, which is
// then dropped (ends are final) and leaves the step without a start time:
// the end report's own start time says when it started.
func batchStart(j *api.Job) int64 {
	for _, st := range j.Steps {
		if st.Id != api.StepBatch {
			continue
		}
		if st.StartUnixMs > 0 {
			return st.StartUnixMs
		}
		for _, t := range st.GetAllocation().GetTasks() {
			if t.StartedUnixMs > 0 {
				return t.StartedUnixMs
			}
		}
	}
	return j.StartUnixMs
}

// listings times squeue, sacct -j and one more sbatch with one held job
// queued (the *_empty_* figures), then queues o.Queue held jobs and times
// them again: what grows with the queue is the difference.
func (b *bench) listings(ctx context.Context) error {
	// Each command's median wall time, and the CPU it and the cluster
	// spent on it (what the wall time would be on an idle machine, give
	// or take parallelism): on a shared machine the second is the steadier.
	timeIt := func(key string, run func() error) error {
		var took []time.Duration
		cpu0 := cpuTime()
		for range b.o.Repeats {
			t0 := time.Now()
			if err := run(); err != nil {
				return err
			}
			took = append(took, time.Since(t0))
		}
		cpu := (cpuTime() - cpu0) / time.Duration(b.o.Repeats)
		slices.Sort(took)
		fmt.Fprintf(b.out, "%s=%.1f\n", key, ms(took[len(took)/2]))
		fmt.Fprintf(b.out, "%s_cpu_ms=%.1f\n", strings.TrimSuffix(key, "_ms"), ms(cpu))
		return nil
	}
	timeAll := func(suffix string, id uint64) error {
		if err := timeIt("squeue_"+suffix, func() error { _, err := b.command(ctx, "squeue"); return err }); err != nil {
			return err
		}
		sacct := func() error { _, err := b.command(ctx, "sacct", "-j", strconv.FormatUint(id, 10)); return err }
		if err := timeIt("sacct_"+suffix, sacct); err != nil {
			return err
		}
		return timeIt("sbatch_"+suffix, func() error {
			_, err := b.sbatch(ctx, "--hold", "--wrap", "true")
			return err
		})
	}
	one, err := b.sbatch(ctx, "--hold", "--wrap", "true")
	if err != nil {
		return err
	}
	if err := timeAll("empty_ms", one.id); err != nil {
		return err
	}

	fmt.Fprintf(b.log, "e2e: queueing %d held jobs\n", b.o.Queue)
	var firstID uint64
	for left := b.o.Queue; left > 0; {
		n := min(left, maxArray)
		s, err := b.sbatch(ctx, "--hold", "--array", fmt.Sprintf("0-%d", n-1), "--wrap", "true")
		if err != nil {
			return err
		}
		if firstID == 0 {
			firstID = s.id
		}
		left -= n
	}
	// squeue must list the whole queue: a header and one line a job.
	out, err := b.command(ctx, "squeue", "--noheader", "--states", "PENDING")
	if err != nil {
		return err
	}
	if lines := bytes.Count(out, []byte("\n")); lines < b.o.Queue {
		return fmt.Errorf("squeue listed %d pending jobs, want at least %d", lines, b.o.Queue)
	}
	fmt.Fprintf(b.out, "queue_jobs=%d\n", b.o.Queue)
	return timeAll("10k_ms", firstID+uint64(b.o.Queue/2))
}

// cpuTime is the CPU time this process (the server and agents) and its
// ended children (the commands) have used.
func cpuTime() time.Duration {
	var total time.Duration
	for _, who := range []int{syscall.RUSAGE_SELF, syscall.RUSAGE_CHILDREN} {
		var ru syscall.Rusage
		if syscall.Getrusage(who, &ru) == nil {
			total += time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
		}
	}
	return total
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// pct is the p-th quantile of sorted (nearest rank).
func pct(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, int(p*float64(len(sorted))))]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
