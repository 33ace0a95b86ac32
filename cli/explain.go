package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/loomhpc/loom/api"
	"github.com/loomhpc/loom/clusterconf"
	"github.com/loomhpc/loom/rpcclient"
	"github.com/loomhpc/loom/scheduler"
)

// `loom priority` (sprio-like factors of every pending job) and `loom why
// JOB` (why a job waits, and where and when it is expected to start) read
// the cluster through the gRPC API and run the scheduler's own functions
// on what they read, so they explain with the same code that decides.

// reasonText says in words what each pending reason means.
var reasonText = map[string]string{
	scheduler.ReasonResources:                "it is the highest-priority job that cannot start: not enough free resources",
	scheduler.ReasonPartitionDown:            "its partition is DOWN: it starts once an operator sets the partition UP",
	scheduler.ReasonPartitionInactive:        "its partition is INACTIVE: it starts once an operator sets the partition UP",
	scheduler.ReasonPriority:                 "higher-priority jobs are waiting for the resources it needs",
	scheduler.ReasonReserved:                 "resources are free, but running there would delay a higher-priority gang's reservation",
	scheduler.ReasonTopology:                 "enough resources are free, but not within the --switches it asked for",
	scheduler.ReasonPreempting:               "lower-QoS jobs are being stopped to make room for it",
	scheduler.ReasonDependency:               "a --dependency is not satisfied yet",
	scheduler.ReasonDependencyNeverSatisfied: "a --dependency can no longer be satisfied; cancel the job",
	scheduler.ReasonBeginTime:                "its --begin time has not come",
	scheduler.ReasonArrayTaskLimit:           "its array already runs as many tasks as its %N limit allows",
	scheduler.ReasonHeld:                     "it is held; scontrol release it",
	scheduler.ReasonPartition:                "its partition cannot hold the job as asked",
	scheduler.ReasonReservation:              "its --reservation has not started yet",
	scheduler.ReasonReservationDeleted:       "its --reservation was deleted or has ended; cancel the job",
	scheduler.ReasonReservationAccess:        "its --reservation no longer lists its user or account",
	scheduler.ReasonQOSMaxJobsPerUser:        "its user already runs as many jobs of its QoS as MaxJobsPerUser allows (scontrol show config)",
	scheduler.ReasonQOSMaxGRESPerUser:        "starting it would take its user's GPUs in its QoS over MaxTRESPerUser (scontrol show config)",
	scheduler.ReasonQOSMaxCPUPerUser:         "starting it would take its user's CPUs in its QoS over MaxTRESPerUser (scontrol show config)",
	"Requeued":                               "it was requeued after a failure and waits for its old ranks to stop or for resources",
	"Preempted":                              "it was preempted by a higher-QoS job and waits to run again",
	"None":                                   "the scheduler has not looked at it yet",
}

// clusterState is what priority and why read from the servers.
type clusterState struct {
	// partitions are the configured ones (GetConfig), which decide the
	// nodes of each partition as the leader's view does.
	partitions []*api.PartitionConfig

	nodes        []*api.Node
	jobs         []*api.Job
	reservations []*api.Reservation
	// cfg is the scheduler's configuration as the servers hold it
	// (GetConfig); the zero Config, the defaults, when none was set.
	cfg scheduler.Config
}

// readCluster lists every node and job through c.
func readCluster(ctx context.Context, c *client) (*clusterState, error) {
	nr, err := c.listNodes(ctx)
	if err != nil {
		return nil, fmt.Errorf("list nodes: %s", errorMessage(err))
	}
	jr, err := c.listJobs(ctx, &api.ListJobsRequest{All: true})
	if err != nil {
		return nil, fmt.Errorf("list jobs: %s", errorMessage(err))
	}
	st := &clusterState{jobs: jr.Jobs}
	// A server without advance reservations (an older one) has none.
	if st.reservations, err = listReservations(ctx, c, ""); err != nil && rpcclient.CodeOf(err) != rpcclient.Unimplemented {
		return nil, fmt.Errorf("list reservations: %s", errorMessage(err))
	}
	cc, err := c.clusterConfig(ctx)
	if err != nil {
		return nil, fmt.Errorf("read the cluster configuration: %s", errorMessage(err))
	}
	if cc != nil {
		st.cfg = clusterconf.ToScheduler(cc)
	}
	st.partitions = cc.GetPartitions()
	for _, ni := range nr.Nodes {
		st.nodes = append(st.nodes, ni.Node)
	}
	return st, nil
}

// readClusterFrom reads the cluster through a client made from e's
// LOOM_ADDR and LOOM_TIMEOUT.
func readClusterFrom(ctx context.Context, e *env) (*clusterState, error) {
	c, err := newClient(e)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return readCluster(ctx, c)
}

// view builds the scheduler's view as the leader would at now.
func (st *clusterState) view(now time.Time, cfg scheduler.Config) *scheduler.View {
	byID := map[uint64]*api.Job{}
	v := &scheduler.View{Nodes: st.nodes, Lookup: func(id uint64) *api.Job { return byID[id] }, Reservations: st.reservations}
	l := &scheduler.Ledger{HalfLife: cfg.Priority.FairShareHalfLife}
	for _, j := range st.jobs {
		byID[j.Id] = j
		if j.State == api.JobState_PENDING || j.State.Active() || j.HoldsResources() {
			v.Jobs = append(v.Jobs, j)
			continue
		}
		if j.StartUnixMs != 0 && j.EndUnixMs != 0 {
			gpus := 0
			for _, r := range j.GetAllocation().GetRanks() {
				gpus += len(r.GpuUuids)
			}
			l.Charge(scheduler.AccountOf(j), float64(gpus), time.UnixMilli(j.StartUnixMs), time.UnixMilli(j.EndUnixMs))
		}
	}
	v.AccountUsage = l.At(now)
	v.Partitions = st.partitions
	return v
}

// Priority runs `loom priority [JOBID...]` with args (those after
// "priority") and returns the exit status. Servers are found as for Run.
func Priority(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return runPriority(ctx, osEnv("loom priority", nil, stdout, stderr), args)
}

func runPriority(ctx context.Context, e *env, args []string) int {
	stdout, stderr := e.stdout, e.stderr
	fs := flag.NewFlagSet("loom priority", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: loom priority [JOBID...]\n\nPrints each pending job's multifactor priority and its weighted factors\n(as sprio does), computed with the weights and QoS the servers hold\n(scontrol show config).")
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	want, err := jobIDSet(fs.Args())
	if err != nil {
		fmt.Fprintln(stderr, "loom priority:", err)
		return 2
	}
	st, err := readClusterFrom(ctx, e)
	if err != nil {
		fmt.Fprintln(stderr, "loom priority:", err)
		return 1
	}
	now := time.Now()
	return writePriorities(stdout, scheduler.Priorities(st.view(now, st.cfg), now, st.cfg), want)
}

func writePriorities(w io.Writer, fs []scheduler.Factors, want map[uint64]bool) int {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "JOBID\tUSER\tACCOUNT\tPRIORITY\tAGE\tFAIRSHARE\tJOBSIZE\tPARTITION\tQOS\tNICE\t")
	for _, f := range fs {
		if len(want) > 0 && !want[f.JobID] {
			continue
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%.0f\t%.0f\t%.0f\t%.0f\t%.0f\t%.0f\t%d\t\n",
			f.JobID, f.User, f.Account, f.Priority, f.Age, f.FairShare, f.JobSize, f.Partition, f.QOS, f.Nice)
	}
	tw.Flush()
	return 0
}

// Why runs `loom why JOBID` with args (those after "why") and returns the
// exit status. Servers are found as for Run.
func Why(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return runWhy(ctx, osEnv("loom why", nil, stdout, stderr), args)
}

func runWhy(ctx context.Context, e *env, args []string) int {
	stdout, stderr := e.stdout, e.stderr
	if len(args) != 1 {
		fmt.Fprintln(stderr, "usage: loom why JOBID\n\nSays why a pending job waits and, with a reservation, where and when it\nis expected to start.")
		return 2
	}
	id, err := strconv.ParseUint(args[0], 10, 64)
	if err != nil {
		fmt.Fprintf(stderr, "loom why: job id %q is not a number\n", args[0])
		return 2
	}
	st, err := readClusterFrom(ctx, e)
	if err != nil {
		fmt.Fprintln(stderr, "loom why:", err)
		return 1
	}
	if err := explainWhy(stdout, st, id, time.Now()); err != nil {
		fmt.Fprintln(stderr, "loom why:", err)
		return 1
	}
	return 0
}

// errNoJob is explainWhy's answer for an unknown id.
var errNoJob = errors.New("no such job")

// explainWhy writes why job id waits, as the scheduler sees it at now.
func explainWhy(w io.Writer, st *clusterState, id uint64, now time.Time) error {
	var job *api.Job
	for _, j := range st.jobs {
		if j.Id == id {
			job = j
		}
	}
	if job == nil {
		return fmt.Errorf("job %d: %w", id, errNoJob)
	}
	if job.State != api.JobState_PENDING {
		fmt.Fprintf(w, "job %d is %s, not pending", id, job.State)
		if job.Reason != "" {
			fmt.Fprintf(w, " (%s)", job.Reason)
		}
		fmt.Fprintln(w)
		return nil
	}
	text := reasonText[job.Reason]
	if text == "" {
		text = "see docs/scheduler.md"
	}
	fmt.Fprintf(w, "job %d is pending: %s — %s.\n", id, job.Reason, text)
	if job.ExpectedStartUnixMs != 0 {
		at := time.UnixMilli(job.ExpectedStartUnixMs)
		fmt.Fprintf(w, "expected start: %s (in %s), if running jobs end at their time limits.\n",
			at.Format(time.DateTime), max(at.Sub(now), 0).Round(time.Second))
	}
	cfg := st.cfg
	v := st.view(now, cfg)
	plan := scheduler.Schedule(v, now, cfg)
	for _, r := range plan.Reservations {
		if r.JobID == id {
			fmt.Fprintf(w, "reserved: %s, %d GPUs (recomputed now: %s)\n", api.CompressHostlist(r.Nodes), len(r.GPUs), r.Start.Format(time.DateTime))
		}
	}
	for _, f := range scheduler.Priorities(v, now, cfg) {
		if f.JobID == id {
			fmt.Fprintf(w, "priority %.0f = age %.0f + fair share %.0f + job size %.0f + partition %.0f + QoS %.0f - nice %d\n",
				f.Priority, f.Age, f.FairShare, f.JobSize, f.Partition, f.QOS, f.Nice)
		}
	}
	return nil
}

// jobIDSet parses job ids given as arguments.
func jobIDSet(args []string) (map[uint64]bool, error) {
	out := map[uint64]bool{}
	for _, a := range args {
		id, err := strconv.ParseUint(a, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("job id %q is not a number", a)
		}
		out[id] = true
	}
	return out, nil
}
