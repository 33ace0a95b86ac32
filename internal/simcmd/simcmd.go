package simcmd

import (
	"encoding/csv"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/loomhpc/loom/gpu"
	"github.com/loomhpc/loom/scheduler"
	"github.com/loomhpc/loom/scheduler/sim"
)

// DefaultTrace is where CI finds the shared traces, relative to the
// repository root.
const DefaultTrace = "../shared/data/traces/philly.csv"

// Main runs `loom sim` with args and returns the exit status.
func Main(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("loom sim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	trace := fs.String("trace", DefaultTrace, "trace CSV (Philly's philly.csv, or any CSV with --columns)")
	vcFile := fs.String("vc", "", "VC node counts (philly_vc.csv); default: philly_vc.csv next to a Philly trace")
	columns := fs.String("columns", "", "generic CSV: submit=COL,duration=COL (or start=COL,end=COL),gpus=COL[,user=COL][,vc=COL][,account=COL][,name=COL][,status=COL] (times in seconds or timestamps; gpus a number or a TRES list like sacct's AllocTRES)")
	delimiter := fs.String("delimiter", ",", "field separator of a generic trace (\"|\" for sacct --parsable2)")
	statuses := fs.String("status", "", "replay only jobs whose status column starts with one of these, comma-separated (e.g. COMPLETED,FAILED,TIMEOUT)")
	from := fs.String("from", "", "first submit time to replay (timestamp or seconds)")
	to := fs.String("to", "", "replay jobs submitted before this time")
	perVC := fs.Bool("per-vc", false, "simulate each VC on its own nodes (as the Helios study does)")
	policy := fs.String("policy", "loom", "fifo, sjf, loom, las, las-limit or gittins; several comma-separated (NAME@MODEL gives one its own --time-limit-model), or all (fifo,sjf@exact,loom,las,las-limit,gittins)")
	restart := fs.Duration("restart-cost", sim.DefaultRestartCost, "progress a preempted job loses each time (since its checkpoint, and resuming)")
	grace := fs.Duration("grace", sim.DefaultGrace, "how long a preempted job keeps its GPUs after its --signal, making no progress")
	lasThresholds := fs.String("las-thresholds", "", "las: attained GPU-seconds at which a job moves to the next queue, ascending, comma-separated (las: 28800,230400,1843200; las-limit: 3600,57600)")
	lasPromote := fs.Float64("las-promote", 0, "las: a job that waited this many times as long as it ran is served first again (default 0: never); gittins: a job that waited this many times its expected remaining run is served first (default 64; negative: never)")
	lasMinRun := fs.Duration("las-min-run", 0, "las: no preemption before a run has lasted this long (default 5m; negative: none)")
	lasWithin := fs.String("las-within", "fifo", "las: order within a queue: fifo (las: no duration estimate) or limit (las-limit: users' time limits, shortest first)")
	lasPatience := fs.Duration("las-patience", 0, "las: a job preempts only once it has waited this long (default 0)")
	lasNoPreempt := fs.Bool("las-no-preempt", false, "las: order the queue only, never preempt")
	lasService := fs.String("las-service", "gpu-time", "las: attained service in gpu-time (GPU-seconds, 2D-LAS) or time (seconds run, 1D-LAS)")
	margin := fs.Float64("gittins-margin", 0, "gittins: a job preempts only jobs whose index is this many times below its own (default 4)")
	heavyTail := fs.Bool("history-heavy-tail", false, "gittins: a job larger than every job it is indexed over is expected to need as much again as it has had (index 1/attained: least attained first among them), as before; default: it keeps the index of the largest (first come first served among them)")
	historyWindow := fs.Int("history-window", 0, "gittins: finished jobs kept per class (account and GPU count) to learn sizes from (default 2000)")
	historyMin := fs.Int("history-min", 0, "gittins: finished jobs a class needs before its own sizes are used, else the GPU count's over every account, else all (default 20)")
	reserveDepth := fs.Int("reserve-depth", 0, "reservations for the top blocked gangs of every policy but fifo and sjf (default 8; negative: none)")
	siblings := fs.Duration("history-siblings", 0, "gittins: finished jobs of the same account and GPU count submitted within this of a job are its siblings, whose sizes it is expected to share (default 1h; negative: none)")
	plot := fs.String("plot", "", "write an SVG of queue length and GPU utilisation over time and the JCT CDF, one line per policy")
	limitModel := fs.String("time-limit-model", "roundup", "time limit users give: exact, factor:K, or roundup (next of 1h 2h 4h 8h 1d 2d 3d 7d)")
	profile := fs.String("profile", "", "GPU profile of every node (dgx1-v100, dgx-a100, ...); default plain 8-GPU nodes")
	nodesFlag := fs.Int("nodes", 0, "nodes of the one cluster when there is no VC file")
	gpusPerNode := fs.Int("gpus-per-node", 8, "GPUs per node (ignored with --profile)")
	out := fs.String("out", "", "write one CSV row per job (and policy) to this file")
	workers := fs.Int("workers", 2, "VCs simulated at once with --per-vc")
	scale := fs.Float64("scale-nodes", 1, "multiply every VC's node count (at least 1 node): a sensitivity knob, not a calibration")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	fail := func(err error) int {
		fmt.Fprintln(stderr, "loom sim:", err)
		return 1
	}
	cols := sim.PhillyColumns
	if *columns != "" {
		c, err := sim.ParseColumns(*columns)
		if err != nil {
			return fail(err)
		}
		cols = c
	}
	if d := []rune(*delimiter); len(d) != 1 {
		return fail(fmt.Errorf("--delimiter=%q: want one character", *delimiter))
	} else if d[0] != ',' {
		cols.Delimiter = d[0]
	}
	if *statuses != "" && cols.Status == "" {
		return fail(fmt.Errorf("--status needs a status column: --columns ...,status=COL"))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	las, err := lasOverrides(set, lasFlags{thresholds: *lasThresholds, promote: *lasPromote, minRun: *lasMinRun,
		patience: *lasPatience, within: *lasWithin, service: *lasService, noPreempt: *lasNoPreempt, margin: *margin})
	if err != nil {
		return fail(err)
	}
	runs, err := parsePolicies(*policy, *limitModel, las)
	if err != nil {
		return fail(err)
	}
	jobs, err := sim.ReadTrace(*trace, cols)
	if err != nil {
		return fail(err)
	}
	var lo, hi time.Time
	if *from != "" {
		if lo, err = sim.ParseTime(*from); err != nil {
			return fail(fmt.Errorf("--from: %w", err))
		}
	}
	if *to != "" {
		if hi, err = sim.ParseTime(*to); err != nil {
			return fail(fmt.Errorf("--to: %w", err))
		}
	}
	var keep []string
	if *statuses != "" {
		keep = strings.Split(*statuses, ",")
	}
	jobs = slices.DeleteFunc(jobs, func(j sim.TraceJob) bool {
		if keep != nil && !slices.ContainsFunc(keep, func(k string) bool { return strings.HasPrefix(j.Status, k) }) {
			return true
		}
		return (!lo.IsZero() && j.Submit.Before(lo)) || (!hi.IsZero() && !j.Submit.Before(hi))
	})
	per := *gpusPerNode
	if *profile != "" {
		t, err := gpu.Profile(*profile, "probe-n0000")
		if err != nil {
			return fail(err)
		}
		per = len(t.API().Gpus)
	}
	vcPath := *vcFile
	if vcPath == "" && *columns == "" {
		vcPath = filepath.Join(filepath.Dir(*trace), "philly_vc.csv")
	}
	var clusters []sim.Cluster
	switch {
	case vcPath != "":
		vcs, order, err := sim.ReadVCs(vcPath)
		if err != nil {
			return fail(err)
		}
		for vc, n := range vcs {
			vcs[vc] = max(1, int(float64(n)**scale+0.5))
		}
		if *perVC {
			byVC := map[string][]sim.TraceJob{}
			for _, j := range jobs {
				byVC[j.VC] = append(byVC[j.VC], j)
			}
			for _, vc := range order {
				clusters = append(clusters, sim.Cluster{Name: vc, Nodes: vcs[vc], GPUsPerNode: per, Profile: *profile, Jobs: byVC[vc]})
			}
		} else {
			total := 0
			for _, n := range vcs {
				total += n
			}
			clusters = []sim.Cluster{{Name: "all", Nodes: total, GPUsPerNode: per, Profile: *profile, Jobs: jobs}}
		}
	case *nodesFlag > 0:
		clusters = []sim.Cluster{{Name: "all", Nodes: *nodesFlag, GPUsPerNode: per, Profile: *profile, Jobs: jobs}}
	default:
		return fail(fmt.Errorf("give --vc or --nodes for a generic trace"))
	}
	var results []policyResult
	for _, pr := range runs {
		opts := sim.Options{Scheduler: pr.cfg, Limit: pr.limit, RestartCost: *restart, Grace: *grace}
		if set["reserve-depth"] && pr.cfg.ReserveDepth >= 0 {
			opts.Scheduler.ReserveDepth = *reserveDepth
		}
		if pr.cfg.Order == scheduler.OrderGittins {
			opts.History = &scheduler.ServiceHistory{Window: *historyWindow, MinSamples: *historyMin, SiblingWindow: *siblings, HeavyTail: *heavyTail}
		}
		r, err := replay(clusters, opts, *workers)
		if err != nil {
			return fail(err)
		}
		r.policyRun = pr
		for _, c := range clusters {
			r.gpus += c.Nodes * per
		}
		r.stats = sim.Summarize(r.results, r.gpus, r.frag)
		if len(results) > 0 {
			fmt.Fprintln(stdout)
		}
		printStats(stdout, r, len(clusters))
		results = append(results, r)
	}
	if len(results) > 1 {
		fmt.Fprintln(stdout)
		printComparison(stdout, results)
	}
	if *out != "" {
		if err := writeJobs(*out, results); err != nil {
			return fail(err)
		}
	}
	if *plot != "" {
		if err := writePlot(*plot, results); err != nil {
			return fail(err)
		}
	}
	return 0
}

// policyRun is one policy to replay: its name as given, its scheduler
// configuration and its time-limit model.
type policyRun struct {
	name, model string
	cfg         scheduler.Config
	limit       sim.LimitModel
}

// policyResult is what replaying one policy over every cluster gave.
type policyResult struct {
	policyRun
	results  []sim.JobResult
	timeline []sim.Sample
	gpus     int
	dropped  int
	cycles   int
	frag     float64
	stats    sim.Stats
}

// parsePolicies reads --policy: names (each NAME or NAME@MODEL),
// comma-separated, or all; las applies the --las-* flags given to the
// las policies.
func parsePolicies(s, model string, las func(scheduler.LASConfig) scheduler.LASConfig) ([]policyRun, error) {
	if s == "all" {
		s = "fifo,sjf@exact,loom,las,las-limit,gittins"
	}
	var out []policyRun
	for _, item := range strings.Split(s, ",") {
		name, m, ok := strings.Cut(item, "@")
		if !ok {
			m = model
		}
		cfg, err := sim.PolicyConfig(name)
		if err != nil {
			return nil, err
		}
		if (cfg.Order == scheduler.OrderLeastAttained || cfg.Order == scheduler.OrderGittins) && las != nil {
			cfg.LAS = las(cfg.LAS)
		}
		lm, err := sim.ParseLimitModel(m)
		if err != nil {
			return nil, err
		}
		out = append(out, policyRun{name: name, model: m, cfg: cfg, limit: lm})
	}
	return out, nil
}

// lasFlags are the --las-* flags' values.
type lasFlags struct {
	thresholds, within, service string
	promote, margin             float64
	minRun, patience            time.Duration
	noPreempt                   bool
}

// lasOverrides checks the --las-* flags and returns what sets the ones
// given (named in set) on a las policy's configuration.
func lasOverrides(set map[string]bool, f lasFlags) (func(scheduler.LASConfig) scheduler.LASConfig, error) {
	var thresholds []float64
	prev := 0.0
	if f.thresholds != "" {
		for _, t := range strings.Split(f.thresholds, ",") {
			v, err := strconv.ParseFloat(strings.TrimSpace(t), 64)
			if err != nil || v <= prev {
				return nil, fmt.Errorf("--las-thresholds=%s: %q is not a number above the one before it", f.thresholds, t)
			}
			thresholds = append(thresholds, v)
			prev = v
		}
	}
	if set["gittins-margin"] && f.margin < 1 {
		return nil, fmt.Errorf("--gittins-margin=%g: want a number of at least 1 (below 1 a job would preempt jobs of a higher index)", f.margin)
	}
	within := map[string]scheduler.QueueOrder{"fifo": scheduler.QueueFIFO, "limit": scheduler.QueueShortestLimit}
	if _, ok := within[f.within]; !ok {
		return nil, fmt.Errorf("--las-within=%s: want fifo or limit", f.within)
	}
	service := map[string]scheduler.ServiceMeasure{"gpu-time": scheduler.ServiceGPUTime, "time": scheduler.ServiceTime}
	if _, ok := service[f.service]; !ok {
		return nil, fmt.Errorf("--las-service=%s: want gpu-time or time", f.service)
	}
	return func(c scheduler.LASConfig) scheduler.LASConfig {
		if set["las-thresholds"] {
			c.Thresholds = thresholds
		}
		if set["las-promote"] {
			c.PromoteFactor = f.promote
		}
		if set["las-min-run"] {
			c.MinRun = f.minRun
		}
		if set["las-patience"] {
			c.Patience = f.patience
		}
		if set["las-within"] {
			c.WithinQueue = within[f.within]
		}
		if set["las-service"] {
			c.Service = service[f.service]
		}
		if set["gittins-margin"] {
			c.GittinsMargin = f.margin
		}
		if set["las-no-preempt"] && f.noPreempt {
			c.Preempt = scheduler.PreemptNever
		}
		return c
	}, nil
}

// replay simulates every cluster under opts, workers at a time, and
// merges the runs.
func replay(clusters []sim.Cluster, opts sim.Options, workers int) (policyResult, error) {
	runs := make([]*sim.Run, len(clusters))
	errs := make([]error, len(clusters))
	var wg sync.WaitGroup
	sem := make(chan struct{}, max(workers, 1))
	for i, c := range clusters {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			runs[i], errs[i] = sim.Simulate(c, opts)
		}()
	}
	wg.Wait()
	var r policyResult
	byTime := map[time.Time]sim.Sample{}
	for i, run := range runs {
		if errs[i] != nil {
			return r, errs[i]
		}
		r.results = append(r.results, run.Results...)
		r.dropped += run.Dropped
		r.cycles += run.Cycles
		r.frag += run.FragGPUSeconds
		for _, s := range run.Timeline {
			t := byTime[s.At]
			t.At = s.At
			t.Queued += s.Queued
			t.UsedGPUs += s.UsedGPUs
			byTime[s.At] = t
		}
	}
	for _, at := range slices.SortedFunc(maps.Keys(byTime), time.Time.Compare) {
		r.timeline = append(r.timeline, byTime[at])
	}
	return r, nil
}

// printStats prints one policy's figures as key=value lines.
func printStats(w io.Writer, r policyResult, clusters int) {
	s := r.stats
	fmt.Fprintf(w, "policy=%s\ntime_limit_model=%s\nclusters=%d\ngpus=%d\n", r.name, r.model, clusters, r.gpus)
	fmt.Fprintf(w, "jobs=%d\ndropped=%d\ncycles=%d\n", s.Jobs, r.dropped, r.cycles)
	fmt.Fprintf(w, "avg_jct_s=%.0f\nmedian_jct_s=%.0f\np99_jct_s=%.0f\navg_queue_s=%.0f\nmakespan_s=%.0f\ngpu_util=%.3f\nfrag_gpus=%.1f\n",
		s.AvgJCT, s.MedianJCT, s.P99JCT, s.AvgQueue, s.Makespan, s.GPUUtil, s.FragGPUs)
	fmt.Fprintf(w, "preemptions=%d\npreemptions_per_job=%.3f\nmax_preemptions=%d\n", s.Preemptions, s.PreemptionsPerJob, s.MaxPreemptions)
	for _, c := range s.Classes {
		fmt.Fprintf(w, "class=%s jobs=%d queue_p50_s=%.0f queue_p99_s=%.0f avg_jct_s=%.0f preemptions_per_job=%.3f\n",
			c.Class, c.Jobs, c.P50Queue, c.P99Queue, c.AvgJCT, c.AvgPreempt)
	}
}

// printComparison prints the policies side by side: average JCT against
// SJF and FIFO (where they ran), the p99 queueing of the largest size
// class that has jobs, and preemptions per job.
func printComparison(w io.Writer, rs []policyResult) {
	ref := func(name string) float64 {
		for _, r := range rs {
			if r.name == name {
				return r.stats.AvgJCT
			}
		}
		return 0
	}
	ratio := func(a, b float64) string {
		if b == 0 {
			return "-"
		}
		return fmt.Sprintf("%.3f", a/b)
	}
	sjf, fifo := ref("sjf"), ref("fifo")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	// The largest class any policy ran a job of (every policy runs the
	// same jobs).
	big := 0
	for k, c := range rs[0].stats.Classes {
		if c.Jobs > 0 {
			big = k
		}
	}
	fmt.Fprintf(tw, "policy\tlimits\tavg_jct_s\t/sjf\t/fifo\tp99_queue_s(%s)\tpreemptions/job\t\n", sim.SizeClasses[big].Name)
	for _, r := range rs {
		s := r.stats
		fmt.Fprintf(tw, "%s\t%s\t%.0f\t%s\t%s\t%.0f\t%.3f\t\n", r.name, r.model, s.AvgJCT, ratio(s.AvgJCT, sjf), ratio(s.AvgJCT, fifo), s.Classes[big].P99Queue, s.PreemptionsPerJob)
	}
	tw.Flush()
}

func writeJobs(path string, rs []policyResult) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := csv.NewWriter(f)
	w.Write([]string{"id", "cluster", "gpus", "submit_unix", "start_unix", "end_unix", "duration_s", "time_limit_s", "queue_s", "jct_s",
		"preemptions", "size_class", "policy"})
	for _, pr := range rs {
		for _, r := range pr.results {
			w.Write([]string{strconv.FormatUint(r.ID, 10), r.Cluster, strconv.Itoa(r.GPUs),
				strconv.FormatInt(r.Submit.Unix(), 10), strconv.FormatInt(r.Start.Unix(), 10), strconv.FormatInt(r.End.Unix(), 10),
				strconv.FormatFloat(r.Duration.Seconds(), 'f', 0, 64), strconv.FormatFloat(r.Limit.Seconds(), 'f', 0, 64),
				strconv.FormatFloat(r.Queue().Seconds(), 'f', 0, 64), strconv.FormatFloat(r.End.Sub(r.Submit).Seconds(), 'f', 0, 64),
				strconv.Itoa(r.Preemptions), sim.ClassOf(r.GPUs), pr.name})
		}
	}
	w.Flush()
	if err := w.Error(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
