package cli

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/loomhpc/loom/api"
)

const reportUsage = `Usage: loom report REPORT [OPTIONS...] [start=TIME] [end=TIME]

Usage reports over a time window, like Slurm's sreport, from the jobs
sacct lists (finished and running): what allocations held within the
window, CPUs and GPUs.

Reports:
  cluster utilization   allocated, idle and reported CPU and GPU time, and
                        the busy part of the allocated GPU time
  user top              the users (with their account) that were allocated
                        the most GPU time: allocated and busy GPU time, CPU
                        time, jobs and mean wait
  account usage         the same figures for each account, then its users
  user waste            the users that left the most allocated GPU time idle:
                        GPU time allocated, busy (utilization-weighted, from
                        the agents' GPU samples), and allocated minus busy
  model usage           the same GPU figures by GPU model, with the GPU time
                        each model's registered GPUs reported

The window defaults to yesterday (midnight to midnight); TIME is
YYYY-MM-DD[THH:MM[:SS]] or now-N{days,hours,minutes}. Jobs counts the jobs
that held resources within the window, Avg Wait is the mean time from
submit (or --begin) to start of those that started within it. Reported
capacity is the CPUs and GPUs of the nodes registered now. A job's busy GPU
time is known as a total; the part within the window is its in-window
allocation × its busy share over its whole run. A GPU's model is the one its
node registered; GPUs of nodes not registered now count as "unknown", and a
job on GPUs of several models is split between them by its GPU count.

Options:
`

// reportKinds are the reports, by their two words.
var reportKinds = []string{"cluster utilization", "user top", "account usage", "user waste", "model usage"}

type reportOpts struct {
	start, end string
	unit       string // hours, minutes, seconds, percent
	parsable   string // "", "|" (-p) or "|2" (-P)
	noHeader   bool
	topCount   int
	help       bool
}

// usage is what a set of jobs held within a window.
type usage struct {
	gpuSec, cpuSec float64
	busyGPUSec     float64 // of gpuSec, the utilization-weighted part
	jobs           int     // jobs that held resources within the window
	started        int     // of those, jobs that started within it
	waitSec        float64 // summed waits of the jobs that started within it
}

func (u *usage) add(o usage) {
	u.gpuSec += o.gpuSec
	u.cpuSec += o.cpuSec
	u.busyGPUSec += o.busyGPUSec
	u.jobs += o.jobs
	u.started += o.started
	u.waitSec += o.waitSec
}

// avgWait is the mean wait in seconds, 0 when no job started.
func (u usage) avgWait() int64 {
	if u.started == 0 {
		return 0
	}
	return int64(u.waitSec/float64(u.started) + 0.5)
}

// jobUsage is what j's current (or last) allocation held within
// [start, end) as seen at now: its GPUs and CPUs times the overlap of its
// run with the window. Runs of earlier generations (before a requeue)
// have no recorded times and are not counted.
func jobUsage(j *api.Job, start, end, now time.Time) usage {
	var u usage
	if j.GetStartUnixMs() == 0 || j.GetState() == api.JobState_PENDING {
		return u
	}
	from := time.UnixMilli(j.GetStartUnixMs())
	to := now
	if j.GetState().Terminal() && j.GetEndUnixMs() > 0 {
		to = time.UnixMilli(j.GetEndUnixMs())
	}
	lo, hi := maxTime(from, start), minTime(to, end)
	if hi.After(lo) {
		sec := hi.Sub(lo).Seconds()
		u.gpuSec = float64(jobGPUs(j)) * sec
		u.cpuSec = float64(jobCPUs(j)) * sec
		u.busyGPUSec = u.gpuSec * busyShare(j, now)
		u.jobs = 1
	}
	if !from.Before(start) && from.Before(end) {
		eligible := max(j.GetSubmitUnixMs(), j.GetSpec().GetBeginUnixMs())
		u.started = 1
		u.waitSec = float64(max(j.GetStartUnixMs()-eligible, 0)) / 1000
		u.jobs = 1
	}
	return u
}

// busyShare is the share of j's allocated GPU time, over its whole run,
// that its ranks kept busy (Job.UsedGpuMs), at most 1.
func busyShare(j *api.Job, now time.Time) float64 {
	alloc := j.AllocGPUMs(now.UnixMilli())
	if alloc == 0 {
		return 0
	}
	return min(float64(j.GetUsedGpuMs())/float64(alloc), 1)
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// reportKey is one line of the user and account reports.
type reportKey struct{ user, account string }

// accountOf is the account a job is charged to: its --account, else its
// user's name (as fair share counts it).
func accountOf(j *api.Job) string {
	if a := j.GetSpec().GetAccount(); a != "" {
		return a
	}
	return j.GetUser()
}

// usageByUser sums jobUsage by user and account.
func usageByUser(jobs []*api.Job, start, end, now time.Time) map[reportKey]usage {
	out := map[reportKey]usage{}
	for _, j := range jobs {
		u := jobUsage(j, start, end, now)
		if u.jobs == 0 {
			continue
		}
		k := reportKey{j.GetUser(), accountOf(j)}
		t := out[k]
		t.add(u)
		out[k] = t
	}
	return out
}

// capacity is the CPUs and GPUs of the registered nodes.
func capacity(nodes []*api.NodeInfo) (cpus, gpus int) {
	for _, n := range nodes {
		cpus += int(n.GetNode().GetCpus())
		gpus += len(n.GetNode().GetTopology().GetGpus())
	}
	return cpus, gpus
}

func runReport(ctx context.Context, e *env, args []string) int {
	o := reportOpts{unit: "hours", topCount: 10}
	opts := []*option{
		{long: "start", short: 'S', arg: requiredArg, meta: "TIME", help: "start of the window (default: yesterday midnight); also start=TIME", set: setString(&o.start)},
		{long: "end", short: 'E', arg: requiredArg, meta: "TIME", help: "end of the window (default: today midnight); also end=TIME", set: setString(&o.end)},
		{long: "time-format", short: 't', arg: requiredArg, meta: "UNIT", help: "hours (default), minutes, seconds, or percent of the reported capacity", set: setString(&o.unit)},
		{long: "parsable", short: 'p', arg: noArg, help: "fields separated by '|', with a trailing '|'", set: func(string) error { o.parsable = "|"; return nil }},
		{long: "parsable2", short: 'P', arg: noArg, help: "fields separated by '|'", set: func(string) error { o.parsable = "|2"; return nil }},
		{long: "noheader", short: 'n', arg: noArg, help: "no header lines", set: setBool(&o.noHeader, true)},
		{long: "topcount", arg: requiredArg, meta: "N", help: "user top: how many users (default 10)", set: func(v string) error {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 {
				return fmt.Errorf("want a count of at least 1")
			}
			o.topCount = n
			return nil
		}},
		{long: "consistent", arg: noArg, help: "read through the leader (linearizable) instead of any server", set: consistentRead(e)},
		{long: "help", short: 'h', arg: noArg, help: "show this help", set: setBool(&o.help, true)},
	}
	pos, err := parseAndApply(opts, args)
	if err != nil {
		return e.fail(err)
	}
	if o.help {
		return printHelp(e, reportUsage, opts)
	}
	// sreport's key=value words: start=, end=, topcount=.
	var words []string
	for _, p := range pos {
		k, v, ok := strings.Cut(p, "=")
		switch strings.ToLower(k) {
		case "start":
			o.start = v
		case "end":
			o.end = v
		case "topcount":
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 {
				return e.fail(fmt.Errorf("topcount=%s: want a count of at least 1", v))
			}
			o.topCount = n
		default:
			if ok {
				return e.fail(&usageError{fmt.Sprintf("unknown option %q (want start=, end= or topcount=)", p)})
			}
			words = append(words, strings.ToLower(p))
		}
	}
	kind := strings.Join(words, " ")
	if !slices.Contains(reportKinds, kind) {
		return e.fail(&usageError{fmt.Sprintf("report %q: want one of %s", kind, strings.Join(reportKinds, ", "))})
	}
	switch o.unit = strings.ToLower(o.unit); o.unit {
	case "hours", "minutes", "seconds", "percent":
	default:
		return e.fail(fmt.Errorf("--time-format=%s: want hours, minutes, seconds or percent", o.unit))
	}
	now := e.now()
	y, m, d := now.In(e.loc).Date()
	end := time.Date(y, m, d, 0, 0, 0, 0, e.loc)
	start := end.AddDate(0, 0, -1)
	if o.start != "" {
		if start, err = parseSacctTime(o.start, now, e.loc); err != nil {
			return e.fail(fmt.Errorf("start=%s: %w", o.start, err))
		}
	}
	if o.end != "" {
		if end, err = parseSacctTime(o.end, now, e.loc); err != nil {
			return e.fail(fmt.Errorf("end=%s: %w", o.end, err))
		}
	}
	if !end.After(start) {
		return e.fail(fmt.Errorf("end=%s is not after start=%s", end.In(e.loc).Format(time.DateTime), start.In(e.loc).Format(time.DateTime)))
	}
	return withClient(e, func(c *client) int {
		// The same listing as sacct -a: finished and running jobs.
		resp, err := c.listJobs(ctx, &api.ListJobsRequest{All: true})
		if err != nil {
			return e.fail(err)
		}
		nodes, err := c.listNodes(ctx)
		if err != nil {
			return e.fail(err)
		}
		r := report{e: e, o: o, start: start, end: end}
		r.cpus, r.gpus = capacity(nodes.GetNodes())
		r.models = gpuModels(nodes.GetNodes())
		jobs := resp.GetJobs()
		switch kind {
		case "cluster utilization":
			r.clusterUtilization(jobs, now)
		case "user top":
			r.userTop(jobs, now)
		case "account usage":
			r.accountUsage(jobs, now)
		case "user waste":
			r.userWaste(jobs, now)
		case "model usage":
			r.modelUsage(jobs, now)
		}
		return 0
	})
}

// report prints one report.
type report struct {
	e          *env
	o          reportOpts
	start, end time.Time
	cpus, gpus int // reported capacity
	models     map[nodeGPU]string
}

// window is the report's length in seconds.
func (r *report) window() float64 { return r.end.Sub(r.start).Seconds() }

// amount formats resource-seconds sec of a resource with total units in
// the report's unit.
func (r *report) amount(sec float64, total int) string {
	switch r.o.unit {
	case "minutes":
		return strconv.FormatInt(int64(sec/60+0.5), 10)
	case "seconds":
		return strconv.FormatInt(int64(sec+0.5), 10)
	case "percent":
		if total == 0 {
			return "0.00%"
		}
		return fmt.Sprintf("%.2f%%", 100*sec/(float64(total)*r.window()))
	}
	return fmt.Sprintf("%.2f", sec/3600)
}

// banner is sreport's header: the report, the window and the unit.
func (r *report) banner(title string) {
	if r.o.noHeader || r.o.parsable != "" {
		return
	}
	unit := map[string]string{"hours": "Hours", "minutes": "Minutes", "seconds": "Seconds", "percent": "Percentage of Total"}[r.o.unit]
	const layout = "2006-01-02T15:04:05"
	dashes := strings.Repeat("-", 80)
	fmt.Fprintln(r.e.stdout, dashes)
	fmt.Fprintf(r.e.stdout, "%s %s - %s (%d secs)\n", title, r.start.In(r.e.loc).Format(layout),
		r.end.Add(-time.Second).In(r.e.loc).Format(layout), int64(r.window()))
	fmt.Fprintf(r.e.stdout, "Usage reported in TRES %s\n", unit)
	fmt.Fprintln(r.e.stdout, dashes)
}

// table prints rows under titles: aligned columns with a dashed rule, the
// first text columns left-aligned and the figures right-aligned, or
// '|'-separated with -p/-P.
func (r *report) table(titles []string, text int, rows [][]string) {
	if r.o.parsable != "" {
		line := func(cells []string) {
			s := strings.Join(cells, "|")
			if r.o.parsable == "|" {
				s += "|"
			}
			fmt.Fprintln(r.e.stdout, s)
		}
		if !r.o.noHeader {
			line(titles)
		}
		for _, row := range rows {
			line(row)
		}
		return
	}
	cols := make([]column, len(titles))
	for i, t := range titles {
		cols[i] = column{title: t, width: -1, right: i >= text}
	}
	if !r.o.noHeader {
		widths := make([]int, len(titles))
		for i, t := range titles {
			widths[i] = len(t)
			for _, row := range rows {
				widths[i] = max(widths[i], len(row[i]))
			}
		}
		dashes := make([]string, len(titles))
		for i, w := range widths {
			dashes[i] = strings.Repeat("-", w)
		}
		rows = append([][]string{dashes}, rows...)
	}
	writeTable(r.e.stdout, cols, rows, !r.o.noHeader)
}

// clusterName is the Cluster column: Loom runs one cluster per control
// plane.
const clusterName = "loom"

func (r *report) clusterUtilization(jobs []*api.Job, now time.Time) {
	var total usage
	for _, u := range usageByUser(jobs, r.start, r.end, now) {
		total.add(u)
	}
	r.banner("Cluster Utilization")
	// Busy is known for GPUs only: the agents sample GPU utilization, not
	// CPU, so the cpu line leaves it empty.
	line := func(name string, used float64, busy string, units int) []string {
		reported := float64(units) * r.window()
		return []string{clusterName, name, r.amount(used, units), busy, r.amount(max(reported-used, 0), units), r.amount(reported, units)}
	}
	r.table([]string{"Cluster", "TRES Name", "Allocated", "Busy", "Idle", "Reported"}, 2, [][]string{
		line("cpu", total.cpuSec, "", r.cpus),
		line("gres/gpu", total.gpuSec, r.amount(total.busyGPUSec, r.gpus), r.gpus),
	})
}

// userColumns are the usage columns of the user and account reports: GPU
// time allocated and, of it, busy (utilization-weighted), as in user waste
// and sacct's AllocGPUHours and UsedGPUHours.
var userColumns = []string{"GPU Alloc", "GPU Busy", "CPU Used", "Jobs", "Avg Wait"}

func (r *report) usageCells(u usage) []string {
	return []string{r.amount(u.gpuSec, r.gpus), r.amount(u.busyGPUSec, r.gpus), r.amount(u.cpuSec, r.cpus), strconv.Itoa(u.jobs), clockDuration(u.avgWait())}
}

func (r *report) userTop(jobs []*api.Job, now time.Time) {
	by := usageByUser(jobs, r.start, r.end, now)
	keys := make([]reportKey, 0, len(by))
	for k := range by {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b reportKey) int {
		if c := cmp.Compare(by[b].gpuSec, by[a].gpuSec); c != 0 {
			return c
		}
		if c := cmp.Compare(by[b].cpuSec, by[a].cpuSec); c != 0 {
			return c
		}
		return cmp.Or(cmp.Compare(a.user, b.user), cmp.Compare(a.account, b.account))
	})
	if len(keys) > r.o.topCount {
		keys = keys[:r.o.topCount]
	}
	r.banner(fmt.Sprintf("Top %d Users", r.o.topCount))
	var rows [][]string
	for _, k := range keys {
		rows = append(rows, append([]string{clusterName, k.user, k.account}, r.usageCells(by[k])...))
	}
	r.table(append([]string{"Cluster", "Login", "Account"}, userColumns...), 3, rows)
}

func (r *report) accountUsage(jobs []*api.Job, now time.Time) {
	by := usageByUser(jobs, r.start, r.end, now)
	accounts := map[string]usage{}
	for k, u := range by {
		t := accounts[k.account]
		t.add(u)
		accounts[k.account] = t
	}
	names := make([]string, 0, len(accounts))
	for a := range accounts {
		names = append(names, a)
	}
	slices.Sort(names)
	r.banner("Account Usage by User")
	var rows [][]string
	for _, a := range names {
		rows = append(rows, append([]string{clusterName, a, ""}, r.usageCells(accounts[a])...))
		var users []string
		for k := range by {
			if k.account == a {
				users = append(users, k.user)
			}
		}
		slices.Sort(users)
		for _, u := range users {
			rows = append(rows, append([]string{clusterName, a, u}, r.usageCells(by[reportKey{u, a}])...))
		}
	}
	r.table(append([]string{"Cluster", "Account", "Login"}, userColumns...), 3, rows)
}

// userWaste ranks users (with their account) by the GPU time they held
// but did not keep busy: allocated minus utilization-weighted.
func (r *report) userWaste(jobs []*api.Job, now time.Time) {
	by := usageByUser(jobs, r.start, r.end, now)
	waste := func(u usage) float64 { return max(u.gpuSec-u.busyGPUSec, 0) }
	keys := make([]reportKey, 0, len(by))
	for k, u := range by {
		if u.gpuSec > 0 {
			keys = append(keys, k)
		}
	}
	slices.SortFunc(keys, func(a, b reportKey) int {
		if c := cmp.Compare(waste(by[b]), waste(by[a])); c != 0 {
			return c
		}
		return cmp.Or(cmp.Compare(a.user, b.user), cmp.Compare(a.account, b.account))
	})
	if len(keys) > r.o.topCount {
		keys = keys[:r.o.topCount]
	}
	r.banner(fmt.Sprintf("Top %d Users by Idle Allocated GPU Time", r.o.topCount))
	var rows [][]string
	for _, k := range keys {
		u := by[k]
		rows = append(rows, []string{clusterName, k.user, k.account,
			r.amount(u.gpuSec, r.gpus), r.amount(u.busyGPUSec, r.gpus), r.amount(waste(u), r.gpus),
			fmt.Sprintf("%.1f%%", 100*u.busyGPUSec/u.gpuSec), strconv.Itoa(u.jobs)})
	}
	r.table([]string{"Cluster", "Login", "Account", "GPU Alloc", "GPU Busy", "GPU Wasted", "GPU Util", "Jobs"}, 3, rows)
}

// nodeGPU names a GPU by its node and index, as allocations do.
type nodeGPU struct {
	node  string
	index uint32
}

// unknownModel is the model of a GPU whose node is not registered now (or
// registered no model).
const unknownModel = "unknown"

// gpuModels maps each registered GPU to its model.
func gpuModels(nodes []*api.NodeInfo) map[nodeGPU]string {
	out := map[nodeGPU]string{}
	for _, n := range nodes {
		for _, g := range n.GetNode().GetTopology().GetGpus() {
			out[nodeGPU{n.GetNode().GetName(), g.GetIndex()}] = cmp.Or(g.GetModel(), unknownModel)
		}
	}
	return out
}

// jobModels counts j's allocated GPUs by model.
func jobModels(j *api.Job, models map[nodeGPU]string) map[string]int {
	out := map[string]int{}
	for _, r := range j.GetAllocation().GetRanks() {
		for _, i := range r.GetGpuIndexes() {
			out[cmp.Or(models[nodeGPU{r.GetNode(), i}], unknownModel)]++
		}
		// A rank that names its GPUs by UUID only.
		if n := len(r.GetGpuUuids()) - len(r.GetGpuIndexes()); n > 0 {
			out[unknownModel] += n
		}
	}
	return out
}

// modelUsage prints allocated, busy and idle allocated GPU time by GPU
// model, with what each model's registered GPUs reported.
func (r *report) modelUsage(jobs []*api.Job, now time.Time) {
	by := map[string]usage{}
	for _, j := range jobs {
		u := jobUsage(j, r.start, r.end, now)
		if u.gpuSec == 0 {
			continue
		}
		counts := jobModels(j, r.models)
		total := 0
		for _, c := range counts {
			total += c
		}
		for m, c := range counts {
			share := float64(c) / float64(total)
			t := by[m]
			t.add(usage{gpuSec: u.gpuSec * share, busyGPUSec: u.busyGPUSec * share, jobs: 1})
			by[m] = t
		}
	}
	gpus := map[string]int{}
	for _, m := range r.models {
		gpus[m]++
	}
	seen := map[string]bool{}
	for m := range gpus {
		seen[m] = true
	}
	for m := range by {
		seen[m] = true
	}
	names := slices.Sorted(maps.Keys(seen))
	r.banner("GPU Usage by Model")
	var rows [][]string
	for _, m := range names {
		u, n := by[m], gpus[m]
		util := "-"
		if u.gpuSec > 0 {
			util = fmt.Sprintf("%.1f%%", 100*u.busyGPUSec/u.gpuSec)
		}
		rows = append(rows, []string{clusterName, m, strconv.Itoa(n),
			r.amount(u.gpuSec, n), r.amount(u.busyGPUSec, n), r.amount(max(u.gpuSec-u.busyGPUSec, 0), n), util,
			strconv.Itoa(u.jobs), r.amount(float64(n)*r.window(), n)})
	}
	r.table([]string{"Cluster", "GPU Model", "GPUs", "GPU Alloc", "GPU Busy", "GPU Wasted", "GPU Util", "Jobs", "Reported"}, 2, rows)
}
