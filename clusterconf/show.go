package clusterconf

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/loomhpc/loom/api"
	"github.com/loomhpc/loom/scheduler"
)

// Setting is one effective setting, as `scontrol show config` prints it.
type Setting struct {
	Key, Value string
}

// Settings lists c's effective settings with Slurm-like names, defaults
// shown as the values in force; nil c is the defaults. QoS, partitions and
// switches follow as one setting each ("QOS[high]", "PartitionName[gpu]",
// "SwitchName[s1]").
func Settings(c *api.ClusterConfig) []Setting {
	sc := ToScheduler(c)
	s := c.GetScheduler()
	policy := s.GetPolicy()
	if policy == "" {
		policy = "multifactor"
	}
	prio := sc.Priority
	if prio.WeightAge == 0 && prio.WeightFairShare == 0 && prio.WeightQOS == 0 && prio.WeightPartition == 0 && prio.WeightJobSize == 0 {
		prio.WeightAge, prio.WeightFairShare, prio.WeightQOS, prio.WeightPartition = scheduler.DefaultPriorityWeight, scheduler.DefaultPriorityWeight, scheduler.DefaultPriorityWeight, scheduler.DefaultPriorityWeight
	}
	depth := sc.ReserveDepth
	switch {
	case depth == 0:
		depth = scheduler.DefaultReserveDepth
	case depth < 0:
		depth = 0
	}
	window := sc.BackfillWindow
	if window <= 0 {
		window = scheduler.DefaultBackfillWindow
	}
	maxAge := prio.MaxAge
	if maxAge <= 0 {
		maxAge = scheduler.DefaultPriorityMaxAge
	}
	halfLife := prio.FairShareHalfLife
	if halfLife <= 0 {
		halfLife = scheduler.DefaultFairShareHalfLife
	}
	out := []Setting{
		{"SchedulerType", policy},
		{"SchedulerStrictOrder", yesNo(sc.Strict)},
		{"SchedulerReserveDepth", strconv.Itoa(depth)},
		{"BackfillWindow", dur(window)},
		{"DefaultTime", limit(s.GetDefaultTimeS())},
		{"MaxTime", limit(s.GetMaxTimeS())},
		{"PriorityWeightAge", num(prio.WeightAge)},
		{"PriorityWeightFairshare", num(prio.WeightFairShare)},
		{"PriorityWeightQOS", num(prio.WeightQOS)},
		{"PriorityWeightPartition", num(prio.WeightPartition)},
		{"PriorityWeightJobSize", num(prio.WeightJobSize)},
		{"PriorityMaxAge", dur(maxAge)},
		{"PriorityFavorSmall", yesNo(prio.FavorSmall)},
		{"PrioritySizeByService", yesNo(prio.SizeByService)},
		{"PriorityDecayHalfLife", dur(halfLife)},
	}
	if len(prio.Shares) > 0 {
		var parts []string
		for _, a := range slices.Sorted(maps.Keys(prio.Shares)) {
			parts = append(parts, a+"="+num(prio.Shares[a]))
		}
		out = append(out, Setting{"AccountShares", strings.Join(parts, ",")})
	}
	if sc.Order == scheduler.OrderLeastAttained {
		l := sc.LAS
		th := l.Thresholds
		if len(th) == 0 {
			th = scheduler.DefaultLASThresholds
		}
		parts := make([]string, len(th))
		for i, t := range th {
			parts[i] = num(t)
		}
		within := "fifo"
		if l.WithinQueue == scheduler.QueueShortestLimit {
			within = "limit"
		}
		minRun := l.MinRun
		if minRun == 0 {
			minRun = scheduler.DefaultLASMinRun
		}
		out = append(out,
			Setting{"LASThresholds", strings.Join(parts, ",")},
			Setting{"LASWithin", within},
			Setting{"LASPromoteFactor", num(l.PromoteFactor)},
			Setting{"LASMinRun", max(minRun, 0).String()},
			Setting{"LASPatience", l.Patience.String()},
			Setting{"LASPreempt", yesNo(l.Preempt != scheduler.PreemptNever)})
	}
	if sc.Order == scheduler.OrderGittins {
		l := sc.LAS
		or := func(v, def float64) float64 {
			if v == 0 {
				return def
			}
			return v
		}
		siblings := l.SiblingWindow
		if siblings == 0 {
			siblings = scheduler.DefaultSiblingWindow
		}
		minRun := l.MinRun
		if minRun == 0 {
			minRun = scheduler.DefaultLASMinRun
		}
		out = append(out,
			Setting{"GittinsMargin", num(or(l.GittinsMargin, scheduler.DefaultGittinsMargin))},
			Setting{"GittinsPromoteFactor", num(or(l.PromoteFactor, scheduler.DefaultGittinsPromote))},
			Setting{"HistoryWindow", num(or(float64(l.HistoryWindow), scheduler.DefaultHistoryWindow))},
			Setting{"HistoryMinSamples", num(or(float64(l.HistoryMinSamples), scheduler.DefaultHistoryMinSamples))},
			Setting{"HistorySiblings", max(siblings, 0).String()},
			Setting{"LASMinRun", max(minRun, 0).String()},
			Setting{"LASPatience", l.Patience.String()},
			Setting{"LASPreempt", yesNo(l.Preempt != scheduler.PreemptNever)})
	}
	for _, q := range c.GetQos() {
		v := fmt.Sprintf("Priority=%d Preempt=%s MaxWall=%s MaxTRESPerUser=%s MaxJobsPerUser=%s MaxSubmitJobsPerUser=%s",
			q.Priority, orNone(strings.Join(q.Preempt, ",")), limit(q.MaxWallS), tres(q), count(q.MaxJobsPerUser), count(q.MaxSubmitPerUser))
		out = append(out, Setting{"QOS[" + q.Name + "]", v})
	}
	for _, p := range c.GetPartitions() {
		state := p.State
		if state == "" {
			state = "UP"
		}
		mode := p.PreemptMode
		if mode == "" {
			mode = "OFF"
		}
		v := fmt.Sprintf("Nodes=%s Features=%s Default=%s MaxTime=%s DefaultTime=%s State=%s AllowGroups=%s AllowAccounts=%s DenyAccounts=%s AllowQos=%s PriorityTier=%d PriorityJobFactor=%d PreemptMode=%s MaxNodes=%s DefMemPerCPU=%d DefMemPerGPU=%d QOS=%s PrivateTmp=%s AllowSwap=%s",
			orAll(p.Nodes), orNone(strings.Join(p.Features, ",")), yesNo(p.Default), limit(p.MaxTimeS), limit(p.DefaultTimeS), state,
			orAll(strings.Join(p.AllowGroups, ",")), orAll(strings.Join(p.AllowAccounts, ",")), orNone(strings.Join(p.DenyAccounts, ",")),
			orAll(strings.Join(p.AllowQos, ",")), p.PriorityTier, p.PriorityJobFactor, mode, count(p.MaxNodes), p.DefMemPerCpuMb, p.DefMemPerGpuMb, orNone(p.Qos), nodeDefault(p.PrivateTmp), nodeDefault(p.AllowSwap))
		out = append(out, Setting{"PartitionName[" + p.Name + "]", v})
	}
	for _, sw := range c.GetSwitches() {
		out = append(out, Setting{"SwitchName[" + sw.Name + "]", fmt.Sprintf("Nodes=%s Switches=%s", orNone(sw.Nodes), orNone(sw.Switches))})
	}
	return out
}

// Diff describes what changes from old to new, one line per setting
// ("DefaultTime: UNLIMITED -> 1:00:00"); none when they schedule alike.
func Diff(old, new *api.ClusterConfig) []string {
	before := map[string]string{}
	var order []string
	for _, s := range Settings(old) {
		before[s.Key] = s.Value
		order = append(order, s.Key)
	}
	var out []string
	after := map[string]bool{}
	for _, s := range Settings(new) {
		after[s.Key] = true
		was, ok := before[s.Key]
		switch {
		case !ok:
			out = append(out, fmt.Sprintf("%s: added (%s)", s.Key, s.Value))
		case was != s.Value:
			out = append(out, fmt.Sprintf("%s: %s -> %s", s.Key, was, s.Value))
		}
	}
	for _, k := range order {
		if !after[k] {
			out = append(out, fmt.Sprintf("%s: removed", k))
		}
	}
	return out
}

func yesNo(b bool) string {
	if b {
		return "YES"
	}
	return "NO"
}

func num(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }

func dur(d time.Duration) string { return api.FormatSlurmDuration(int64(d / time.Second)) }

func limit(s int64) string {
	if s <= 0 {
		return "UNLIMITED"
	}
	return api.FormatSlurmDuration(s)
}

func count(n uint32) string {
	if n == 0 {
		return "UNLIMITED"
	}
	return strconv.FormatUint(uint64(n), 10)
}

func tres(q *api.QOSConfig) string {
	var parts []string
	if q.MaxCpusPerUser > 0 {
		parts = append(parts, fmt.Sprintf("cpu=%d", q.MaxCpusPerUser))
	}
	if q.MaxGpusPerUser > 0 {
		parts = append(parts, fmt.Sprintf("gres/gpu=%d", q.MaxGpusPerUser))
	}
	return orNone(strings.Join(parts, ","))
}

func orNone(s string) string {
	if s == "" {
		return "(null)"
	}
	return s
}

func orAll(s string) string {
	if s == "" {
		return "ALL"
	}
	return s
}

// nodeDefault shows an optional partition switch: YES, NO, or NODE where
// each node's agent decides.
func nodeDefault(b *bool) string {
	if b == nil {
		return "NODE"
	}
	return yesNo(*b)
}
