package main

import (
	"flag"
	"fmt"
	"strconv"
	"strings"

	"github.com/loomhpc/loom/scheduler"
)

// schedulerPolicies are the names [scheduler] policy takes.
var schedulerPolicies = map[string]scheduler.Order{
	"multifactor": scheduler.OrderMultifactor,
	"fifo":        scheduler.OrderFIFO,
	"las":         scheduler.OrderLeastAttained,
	"gittins":     scheduler.OrderGittins,
}

// policyFlag is --scheduler-policy: a name from schedulerPolicies.
type policyFlag struct{ order scheduler.Order }

func (p *policyFlag) String() string {
	for name, o := range schedulerPolicies {
		if p != nil && o == p.order {
			return name
		}
	}
	return "multifactor"
}

func (p *policyFlag) Set(s string) error {
	o, ok := schedulerPolicies[s]
	if !ok {
		return fmt.Errorf("unknown policy (want multifactor, fifo, las or gittins)")
	}
	p.order = o
	return nil
}

// thresholdsFlag is --scheduler-las-thresholds: ascending GPU-seconds.
type thresholdsFlag []float64

func (t *thresholdsFlag) String() string {
	if t == nil {
		return ""
	}
	parts := make([]string, len(*t))
	for i, v := range *t {
		parts[i] = strconv.FormatFloat(v, 'g', -1, 64)
	}
	return strings.Join(parts, ",")
}

func (t *thresholdsFlag) Set(s string) error {
	var out thresholdsFlag
	for _, f := range strings.Split(s, ",") {
		v, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
		if err != nil || v <= 0 || (len(out) > 0 && v <= out[len(out)-1]) {
			return fmt.Errorf("%q: want positive GPU-seconds, each above the one before", f)
		}
		out = append(out, v)
	}
	*t = out
	return nil
}

// withinFlag is --scheduler-las-within: fifo or limit.
type withinFlag struct{ order scheduler.QueueOrder }

func (w *withinFlag) String() string {
	if w != nil && w.order == scheduler.QueueShortestLimit {
		return "limit"
	}
	return "fifo"
}

func (w *withinFlag) Set(s string) error {
	switch s {
	case "fifo":
		w.order = scheduler.QueueFIFO
	case "limit":
		w.order = scheduler.QueueShortestLimit
	default:
		return fmt.Errorf("want fifo or limit")
	}
	return nil
}

// schedulerFlags registers loom server's --scheduler-* flags (which the
// [scheduler] table of loom.toml sets too) and returns what builds the
// scheduler configuration from them once parsed.
func schedulerFlags(fs *flag.FlagSet) func() scheduler.Config {
	policy := &policyFlag{}
	fs.Var(policy, "scheduler-policy", "queue order: multifactor (Slurm-style priority), fifo, las (least attained GPU-service first, preempting requeueable jobs of later queues) or gittins (Gittins index learned from finished jobs' sizes, preempting requeueable jobs of much lower index; the las min-run, patience and preempt settings apply)")
	var thresholds thresholdsFlag
	fs.Var(&thresholds, "scheduler-las-thresholds", "las: attained GPU-seconds at which a job moves to the next queue, ascending, comma-separated (default 28800,230400,1843200)")
	promote := fs.Float64("scheduler-las-promote-factor", 0, "las: a job that has waited this many times as long as it ran is served first again (default 0: never); gittins: a job that has waited this many times its expected remaining run is served first (default 64; negative: never)")
	minRun := fs.Duration("scheduler-las-min-run", 0, "las: a run is not preempted before it has lasted this long (default 5m; negative: no protection)")
	patience := fs.Duration("scheduler-las-patience", 0, "las: a job preempts only once it has waited this long (default 0: at once)")
	within := &withinFlag{}
	fs.Var(within, "scheduler-las-within", "las: order within a queue: fifo (no estimate of duration) or limit (time limits, shortest first)")
	preempt := fs.Bool("scheduler-las-preempt", true, "las: preempt requeueable batch jobs of later queues (false: only order the queue)")
	margin, window, minSamples := new(float64), new(int), new(int)
	fs.Func("scheduler-gittins-margin", "gittins: a job preempts only jobs whose index is this many times below its own, at least 1 (default 4)", func(v string) error {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f < 1 {
			return fmt.Errorf("%q: want a number of at least 1", v)
		}
		*margin = f
		return nil
	})
	count := func(p *int) func(string) error {
		return func(v string) error {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 {
				return fmt.Errorf("%q: want a whole number of at least 1", v)
			}
			*p = n
			return nil
		}
	}
	fs.Func("scheduler-history-window", "gittins: finished jobs kept per account and GPU count to learn sizes from (default 2000)", count(window))
	fs.Func("scheduler-history-min-samples", "gittins: finished jobs an account's class needs before its own sizes are used, else every account's (default 20)", count(minSamples))
	siblings := fs.Duration("scheduler-history-siblings", 0, "gittins: finished jobs of the same account and GPU count submitted within this of a job are its siblings, whose sizes it is expected to share (default 10m; negative: none)")
	return func() scheduler.Config {
		c := scheduler.Config{Order: policy.order}
		if c.Order == scheduler.OrderLeastAttained || c.Order == scheduler.OrderGittins {
			c.LAS = scheduler.LASConfig{Thresholds: thresholds, PromoteFactor: *promote, MinRun: *minRun, Patience: *patience,
				WithinQueue: within.order, GittinsMargin: *margin, HistoryWindow: *window, HistoryMinSamples: *minSamples,
				SiblingWindow: *siblings}
			if !*preempt {
				c.LAS.Preempt = scheduler.PreemptNever
			}
		}
		return c
	}
}
