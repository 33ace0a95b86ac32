package simcmd

import (
	"encoding/csv"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/loomhpc/loom/gpu"
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
	columns := fs.String("columns", "", "generic CSV: submit=COL,duration=COL,gpus=COL[,user=COL][,vc=COL] (times in seconds or timestamps)")
	from := fs.String("from", "", "first submit time to replay (timestamp or seconds)")
	to := fs.String("to", "", "replay jobs submitted before this time")
	perVC := fs.Bool("per-vc", false, "simulate each VC on its own nodes (as the Helios study does)")
	policy := fs.String("policy", "loom", "fifo, sjf or loom")
	limitModel := fs.String("time-limit-model", "roundup", "time limit users give: exact, factor:K, or roundup (next of 1h 2h 4h 8h 1d 2d 3d 7d)")
	profile := fs.String("profile", "", "GPU profile of every node (dgx1-v100, dgx-a100, ...); default plain 8-GPU nodes")
	nodesFlag := fs.Int("nodes", 0, "nodes of the one cluster when there is no VC file")
	gpusPerNode := fs.Int("gpus-per-node", 8, "GPUs per node (ignored with --profile)")
	out := fs.String("out", "", "write one CSV row per job to this file")
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
	cfg, err := sim.PolicyConfig(*policy)
	if err != nil {
		return fail(err)
	}
	lm, err := sim.ParseLimitModel(*limitModel)
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
	jobs = slices.DeleteFunc(jobs, func(j sim.TraceJob) bool {
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
	runs := make([]*sim.Run, len(clusters))
	errs := make([]error, len(clusters))
	var wg sync.WaitGroup
	sem := make(chan struct{}, max(*workers, 1))
	for i, c := range clusters {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			runs[i], errs[i] = sim.Simulate(c, cfg, lm)
		}()
	}
	wg.Wait()
	var all []sim.JobResult
	gpus, dropped, cycles := 0, 0, 0
	var frag float64
	for i, r := range runs {
		if errs[i] != nil {
			return fail(errs[i])
		}
		all = append(all, r.Results...)
		gpus += clusters[i].Nodes * per
		dropped += r.Dropped
		cycles += r.Cycles
		frag += r.FragGPUSeconds
	}
	s := sim.Summarize(all, gpus, frag)
	fmt.Fprintf(stdout, "policy=%s\ntime_limit_model=%s\nclusters=%d\ngpus=%d\n", *policy, *limitModel, len(clusters), gpus)
	fmt.Fprintf(stdout, "jobs=%d\ndropped=%d\ncycles=%d\n", s.Jobs, dropped, cycles)
	fmt.Fprintf(stdout, "avg_jct_s=%.0f\nmedian_jct_s=%.0f\np99_jct_s=%.0f\navg_queue_s=%.0f\nmakespan_s=%.0f\ngpu_util=%.3f\nfrag_gpus=%.1f\n",
		s.AvgJCT, s.MedianJCT, s.P99JCT, s.AvgQueue, s.Makespan, s.GPUUtil, s.FragGPUs)
	if *out != "" {
		if err := writeJobs(*out, all); err != nil {
			return fail(err)
		}
	}
	return 0
}

func writeJobs(path string, res []sim.JobResult) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := csv.NewWriter(f)
	w.Write([]string{"id", "cluster", "gpus", "submit_unix", "start_unix", "end_unix", "duration_s", "time_limit_s", "queue_s", "jct_s"})
	for _, r := range res {
		w.Write([]string{strconv.FormatUint(r.ID, 10), r.Cluster, strconv.Itoa(r.GPUs),
			strconv.FormatInt(r.Submit.Unix(), 10), strconv.FormatInt(r.Start.Unix(), 10), strconv.FormatInt(r.End.Unix(), 10),
			strconv.FormatFloat(r.Duration.Seconds(), 'f', 0, 64), strconv.FormatFloat(r.Limit.Seconds(), 'f', 0, 64),
			strconv.FormatFloat(r.Start.Sub(r.Submit).Seconds(), 'f', 0, 64), strconv.FormatFloat(r.End.Sub(r.Submit).Seconds(), 'f', 0, 64)})
	}
	w.Flush()
	if err := w.Error(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
