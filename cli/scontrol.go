package cli

import (
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/loomhpc/loom/api"
	"github.com/loomhpc/loom/api/apiclient"
	"github.com/loomhpc/loom/rpcclient"
)

const scontrolUsage = `Usage: scontrol [OPTIONS...] COMMAND

Commands:
  show job [JOBID]                      a job's details (all active jobs without JOBID)
  show node [NODENAME]                  a node's details (all nodes without NODENAME)
  show step [JOBID[.STEPID]]            job steps (those of every active job without one)
  show partition [NAME]                 a partition's settings and nodes (all without NAME)
  show hostnames [HOSTLIST]             one host name per line ($SLURM_JOB_NODELIST by default)
  show reservation [NAME]               advance reservations (docs/reservations.md)
  create reservation ReservationName=NAME StartTime=now|TIME Duration=TIME|EndTime=TIME
         Nodes=HOSTLIST|NodeCnt=N [PartitionName=P] Users=U,...|Accounts=A,... [Flags=MAINT,IGNORE_JOBS,OVERLAP]
  update ReservationName=NAME [EndTime=|Duration=|StartTime=|Users[+-]=|Accounts[+-]=|Nodes=|Flags=]
  delete ReservationName=NAME
  show config                           the scheduling settings in force (loom.toml, replicated)
  update nodename=HOSTLIST state=drain reason="why"
  update nodename=HOSTLIST state=resume
  update jobid=ID[,ID...] [TimeLimit=TIME] [Partition=P] [QOS=Q] [NumNodes=N[-M]] [Name=N] [Comment=C]
                                        change pending jobs (owners may only lower TimeLimit)
  hold JOBID[,JOBID...]                 keep pending jobs from starting
  release JOBID[,JOBID...]              let held jobs start
  requeue JOBID[,JOBID...]              stop running (or finished) jobs and queue them again

Options:
`

type scontrolOpts struct {
	oneLiner bool
	json     bool
	help     bool
	details  bool // -d: each node's CPU_IDs, memory and GPUs
}

func runScontrol(ctx context.Context, e *env, args []string) int {
	var o scontrolOpts
	opts := []*option{
		{long: "oneliner", short: 'o', arg: noArg, help: "print each record on one line", set: setBool(&o.oneLiner, true)},
		{long: "json", arg: noArg, help: "print API objects as JSON", set: setBool(&o.json, true)},
		{long: "consistent", arg: noArg, help: "read through the leader (linearizable) instead of any server", set: consistentRead(e)},
		{long: "quiet", short: 'Q', arg: noArg, set: func(string) error { return nil }},
		{long: "details", short: 'd', arg: noArg, help: "show job: each node's cores (CPU_IDs), memory and GPUs", set: setBool(&o.details, true)},
		{long: "help", short: 'h', arg: noArg, help: "show this help", set: setBool(&o.help, true)},
		{long: "usage", arg: noArg, set: setBool(&o.help, true)},
	}
	pos, err := parseAndApply(opts, args)
	if err != nil {
		return e.fail(err)
	}
	if o.help || len(pos) == 0 {
		if len(pos) == 0 && !o.help {
			return e.fail(&usageError{"no command given"})
		}
		return printHelp(e, scontrolUsage, opts)
	}
	cmd := strings.ToLower(pos[0])
	switch {
	case cmd == "show":
		if len(pos) < 2 {
			return e.fail(&usageError{"show: say what to show: job or node"})
		}
		what := strings.ToLower(pos[1])
		rest := pos[2:]
		if what == "hostnames" || what == "hostname" {
			return showHostnames(e, rest)
		}
		if len(rest) > 1 {
			return e.fail(&usageError{fmt.Sprintf("show %s: unexpected argument %q", what, rest[1])})
		}
		switch what {
		case "partition", "partitions", "partitionname":
			return withClient(e, func(c *client) int { return showPartitions(ctx, e, c, rest, o) })
		case "job", "jobs", "jobid":
			return withClient(e, func(c *client) int { return showJobs(ctx, e, c, rest, o) })
		case "node", "nodes", "nodename":
			return withClient(e, func(c *client) int { return showNodes(ctx, e, c, rest, o) })
		case "step", "steps":
			return withClient(e, func(c *client) int { return showSteps(ctx, e, c, rest, o) })
		case "reservation", "reservations", "res", "reservationname":
			return withClient(e, func(c *client) int { return showReservations(ctx, e, c, rest, o) })
		case "config":
			return withClient(e, func(c *client) int { return showConfig(ctx, e, c, o) })
		}
		return e.fail(&usageError{fmt.Sprintf("show: cannot show %q: Loom shows job, node, step, partition, reservation, config and hostnames", pos[1])})
	case (cmd == "create" || cmd == "update" || cmd == "delete") && isReservationCommand(pos[1:]):
		return withClient(e, func(c *client) int {
			switch cmd {
			case "create":
				return createReservation(ctx, e, c, pos[1:])
			case "update":
				return updateReservation(ctx, e, c, pos[1:])
			}
			return deleteReservation(ctx, e, c, pos[1:])
		})
	case cmd == "update" && isJobUpdate(pos[1:]):
		return withClient(e, func(c *client) int { return updateJobs(ctx, e, c, pos[1:]) })
	case cmd == "update":
		return withClient(e, func(c *client) int { return updateNodes(ctx, e, c, pos[1:]) })
	case cmd == "hold" || cmd == "release":
		return changeJobs(ctx, e, cmd, pos[1:], func(ctx context.Context, jobs apiclient.JobServiceClient, ids []uint64) (uint64, error) {
			resp, err := jobs.Hold(ctx, &api.HoldRequest{JobIds: ids, Release: cmd == "release"})
			return resp.GetIndex(), err
		})
	case cmd == "requeue":
		return changeJobs(ctx, e, cmd, pos[1:], func(ctx context.Context, jobs apiclient.JobServiceClient, ids []uint64) (uint64, error) {
			resp, err := jobs.Requeue(ctx, &api.RequeueRequest{JobIds: ids})
			return resp.GetIndex(), err
		})
	case cmd == "suspend" || cmd == "resume" || cmd == "top":
		return e.errorf("%s is not supported by Loom yet", cmd)
	}
	return e.fail(&usageError{fmt.Sprintf("unknown command %q", pos[0])})
}

// keyValues writes Slurm's "Key=Value" records: one line of the first
// group, the others indented by three spaces, or all on one line.
type keyValues struct {
	lines [][]string
	// tresLine is the index of a job record's TRES line, after which
	// -d's node lines go.
	tresLine int
}

func (kv *keyValues) line(pairs ...string) {
	var l []string
	for i := 0; i+1 < len(pairs); i += 2 {
		l = append(l, pairs[i]+"="+pairs[i+1])
	}
	kv.lines = append(kv.lines, l)
}

func (kv *keyValues) write(w io.Writer, oneLiner bool) {
	if oneLiner {
		var all []string
		for _, l := range kv.lines {
			all = append(all, l...)
		}
		fmt.Fprintln(w, strings.Join(all, " "))
		return
	}
	for i, l := range kv.lines {
		indent := "   "
		if i == 0 {
			indent = ""
		}
		fmt.Fprintln(w, indent+strings.Join(l, " "))
	}
	fmt.Fprintln(w)
}

func null(s string) string { return orDefault(s, "(null)") }

func showJobs(ctx context.Context, e *env, c *client, rest []string, o scontrolOpts) int {
	var jobs []*api.Job
	if len(rest) == 1 {
		ids, err := parseJobIDs(rest)
		if err != nil {
			return e.fail(err)
		}
		for _, id := range ids {
			j, err := c.getJob(ctx, id)
			if rpcclient.CodeOf(err) == rpcclient.NotFound {
				return e.errorf("job %d: invalid job id specified", id)
			}
			if err != nil {
				return e.errorf("job %d: %s", id, messageAbout(err, fmt.Sprintf("job %d: ", id)))
			}
			jobs = append(jobs, j)
		}
	} else {
		resp, err := c.listJobs(ctx, &api.ListJobsRequest{})
		if err != nil {
			return e.fail(err)
		}
		jobs = resp.GetJobs()
		sort.Slice(jobs, func(a, b int) bool { return jobs[a].GetId() < jobs[b].GetId() })
	}
	if o.json {
		if err := writeJSON(e.stdout, &api.ListJobsResponse{Jobs: jobs}); err != nil {
			return e.fail(err)
		}
		return 0
	}
	if len(jobs) == 0 {
		fmt.Fprintln(e.stdout, "No jobs in the system")
		return 0
	}
	for _, j := range jobs {
		kv := jobRecord(j, e)
		if o.details {
			kv.lines = slices.Insert(kv.lines, kv.tresLine+1, nodeDetails(j.GetAllocation())...)
		}
		kv.write(e.stdout, o.oneLiner)
	}
	return 0
}

func jobRecord(j *api.Job, e *env) *keyValues {
	s := j.GetSpec()
	a := j.GetAllocation()
	kv := &keyValues{}
	kv.line("JobId", strconv.FormatUint(j.GetId(), 10), "JobName", s.GetName())
	kv.line("UserId", fmt.Sprintf("%s(%d)", j.GetUser(), j.GetUid()), "GroupId", strconv.FormatUint(uint64(j.GetGid()), 10))
	kv.line("Priority", strconv.FormatUint(uint64(j.GetPriority()), 10), "Nice", strconv.Itoa(int(s.GetNice())),
		"Account", null(s.GetAccount()), "QOS", null(s.GetQos()))
	kv.line("JobState", stateName(j.GetState()), "Reason", orDefault(j.GetReason(), "None"), "Dependency", null(s.GetDependency()))
	requeue := "0"
	if s.RequeueAllowed() {
		requeue = "1"
	}
	kv.line("Requeue", requeue, "Restarts", strconv.FormatUint(uint64(j.GetRestartCount()), 10),
		"MaxRestarts", strconv.FormatUint(uint64(s.RestartLimit()), 10), "BatchFlag", "1", "ExitCode", exitCode(j))
	limit := "Partition_Limit"
	if s.GetTimeLimitS() != 0 {
		limit = clockDuration(s.GetTimeLimitS())
	}
	timeMin := "N/A"
	if s.GetTimeMinS() > 0 {
		timeMin = clockDuration(s.GetTimeMinS())
	}
	kv.line("RunTime", clockDuration(jobElapsed(j, e.now())), "TimeLimit", limit, "TimeMin", timeMin)
	kv.line("SubmitTime", slurmTimestamp(j.GetSubmitUnixMs(), e.loc), "EligibleTime", slurmTimestamp(j.GetSubmitUnixMs(), e.loc))
	start := j.GetStartUnixMs()
	if j.GetState() == api.JobState_PENDING {
		start = j.GetExpectedStartUnixMs()
	}
	kv.line("StartTime", slurmTimestamp(start, e.loc), "EndTime", slurmTimestamp(j.GetEndUnixMs(), e.loc))
	kv.line("Partition", s.PartitionOf(), "AllocNode:Sid", j.GetSubmitHost()+":0")
	if s.GetReservation() != "" {
		kv.line("Reservation", s.GetReservation())
	}
	nodes := "(null)"
	batchHost := "(null)"
	if len(a.GetNodes()) > 0 {
		nodes = api.CompressHostlist(a.GetNodes())
		batchHost = a.GetNodes()[0]
	}
	kv.line("NodeList", nodes, "BatchHost", batchHost)
	lo, hi := s.NodeRange()
	numNodes := strconv.Itoa(int(lo))
	if hi > lo {
		numNodes += "-" + strconv.Itoa(int(hi))
	}
	if n := len(a.GetNodes()); n > 0 {
		numNodes = strconv.Itoa(n)
	}
	tasks := len(a.GetRanks())
	if tasks == 0 {
		tasks = int(s.TotalTasks(lo))
	}
	kv.line("NumNodes", numNodes, "NumCPUs", strconv.FormatUint(uint64(jobCPUs(j)), 10), "NumTasks", strconv.Itoa(tasks),
		"CPUs/Task", strconv.FormatUint(uint64(max(1, s.GetCpusPerTask())), 10))
	kv.line("TRES", null(jobTRES(j)))
	kv.tresLine = len(kv.lines) - 1
	mem := "0"
	if s.GetMemPerNodeMb() > 0 {
		mem = strconv.FormatUint(s.GetMemPerNodeMb(), 10) + "M"
	}
	switch {
	case s.GetMemPerCpuMb() > 0:
		kv.line("MinMemoryCPU", strconv.FormatUint(s.GetMemPerCpuMb(), 10)+"M", "Exclusive", strconv.FormatBool(s.GetExclusive()))
	default:
		kv.line("MinMemoryNode", mem, "Exclusive", strconv.FormatBool(s.GetExclusive()))
	}
	kv.line("Features", null(s.GetConstraint()))
	kv.line("TresPerJob", gpuTres(s.GetGpus(), s.GetGpuType()), "TresPerNode", tresPerNode(s),
		"TresPerTask", gpuTres(s.GetGpusPerTask(), s.GetGpuType()))
	if s.GetMemPerGpuMb() > 0 || s.GetCpusPerGpu() > 0 {
		var perTres []string
		if s.GetCpusPerGpu() > 0 {
			perTres = append(perTres, "CpusPerTres", "gres:gpu:"+strconv.FormatUint(uint64(s.GetCpusPerGpu()), 10))
		}
		if s.GetMemPerGpuMb() > 0 {
			perTres = append(perTres, "MemPerTres", "gres:gpu:"+strconv.FormatUint(s.GetMemPerGpuMb(), 10))
		}
		kv.line(perTres...)
	}
	if s.GetComment() != "" {
		kv.line("Comment", s.GetComment())
	}
	if s.GetMailType() != "" || s.GetMailUser() != "" {
		kv.line("MailUser", null(s.GetMailUser()), "MailType", null(s.GetMailType()))
	}
	if s.GetImage() != "" {
		kv.line("Image", s.GetImage(), "Mounts", null(strings.Join(s.GetMounts(), ",")))
	}
	kv.line("Command", "(batch script)")
	kv.line("WorkDir", null(s.GetWorkingDir()))
	kv.line("StdErr", null(orDefault(s.GetError(), s.GetOutput())))
	kv.line("StdOut", null(s.GetOutput()))
	return kv
}

// nodeDetails are scontrol show job -d's lines for a's nodes, in gang
// order: the cores the ranks hold there (CPU_IDs, the node's core
// numbers that map_cpu and mask_cpu name), their memory and GPUs.
func nodeDetails(a *api.Allocation) [][]string {
	var out [][]string
	for _, node := range a.GetNodes() {
		var mem uint64
		var gpus []uint32
		for _, r := range a.GetRanks() {
			if r.Node == node {
				mem += r.MemMb
				gpus = append(gpus, r.GpuIndexes...)
			}
		}
		slices.Sort(gpus)
		gpus = slices.Compact(gpus)
		l := []string{"Nodes=" + node, "CPU_IDs=" + null(api.FormatCores(a.NodeCores(node))), "Mem=" + strconv.FormatUint(mem, 10)}
		if len(gpus) > 0 {
			l = append(l, fmt.Sprintf("GRES=gpu:%d(IDX:%s)", len(gpus), api.FormatCores(gpus)))
		}
		out = append(out, l)
	}
	return out
}

// tresPerNode is Slurm's TresPerNode: the GPUs per node and the other
// generic resources, "gres/gpu:h100:2,gres/nvme:200", or "(null)".
func tresPerNode(s *api.JobSpec) string {
	var parts []string
	if s.GetGpusPerNode() > 0 {
		parts = append(parts, gpuTres(s.GetGpusPerNode(), s.GetGpuType()))
	}
	for _, g := range slices.Sorted(maps.Keys(s.GetGresPerNode())) {
		parts = append(parts, fmt.Sprintf("gres/%s:%d", g, s.GresPerNode[g]))
	}
	return null(strings.Join(parts, ","))
}

// gpuTres is "gres/gpu:h100:8", or "(null)" for no GPUs.
func gpuTres(n uint32, typ string) string {
	switch {
	case n == 0:
		return "(null)"
	case typ != "":
		return fmt.Sprintf("gres/gpu:%s:%d", typ, n)
	}
	return fmt.Sprintf("gres/gpu:%d", n)
}

func showNodes(ctx context.Context, e *env, c *client, rest []string, o scontrolOpts) int {
	var nodes []*api.NodeInfo
	if len(rest) == 1 {
		names, err := api.ExpandHostlist(rest[0])
		if err != nil {
			return e.fail(err)
		}
		for _, name := range names {
			var n *api.NodeInfo
			err := c.do(ctx, true, func(ctx context.Context, cc *rpcclient.Conn) error {
				var err error
				n, err = c.nodes(cc).GetNode(ctx, &api.GetNodeRequest{Name: name})
				return err
			})
			if rpcclient.CodeOf(err) == rpcclient.NotFound {
				return e.errorf("node %s not found", name)
			}
			if err != nil {
				return e.errorf("node %s: %s", name, messageAbout(err, "node "+name+": ", fmt.Sprintf("node %q: ", name)))
			}
			nodes = append(nodes, n)
		}
	} else {
		resp, err := c.listNodes(ctx)
		if err != nil {
			return e.fail(err)
		}
		nodes = resp.GetNodes()
		sortNodes(nodes)
	}
	if o.json {
		if err := writeJSON(e.stdout, &api.ListNodesResponse{Nodes: nodes}); err != nil {
			return e.fail(err)
		}
		return 0
	}
	if len(nodes) == 0 {
		fmt.Fprintln(e.stdout, "No nodes in the system")
		return 0
	}
	cfg, err := c.clusterConfig(ctx)
	if err != nil {
		return e.fail(err)
	}
	ps := newPartitionSet(cfg)
	for _, n := range nodes {
		nodeRecord(n, ps, e).write(e.stdout, o.oneLiner)
	}
	return 0
}

func nodeRecord(ni *api.NodeInfo, ps partitionSet, e *env) *keyValues {
	n := ni.GetNode()
	kv := &keyValues{}
	kv.line("NodeName", n.GetName())
	kv.line("CPUAlloc", strconv.FormatUint(uint64(ni.GetCpusAllocated()), 10), "CPUTot", strconv.FormatUint(uint64(n.GetCpus()), 10))
	var labels []string
	for k, v := range n.GetLabels() {
		labels = append(labels, k+"="+v)
	}
	sort.Strings(labels)
	features := null(strings.Join(n.AllFeatures(), ","))
	kv.line("AvailableFeatures", features)
	kv.line("ActiveFeatures", features)
	if len(labels) > 0 {
		kv.line("Labels", strings.Join(labels, ","))
	}
	kv.line("Gres", nodeGres(ni, false))
	kv.line("GresUsed", nodeGres(ni, true))
	kv.line("NodeAddr", null(n.GetAddress()), "Version", null(n.GetVersion()))
	kv.line("RealMemory", strconv.FormatUint(n.GetMemoryMb(), 10), "AllocMem", strconv.FormatUint(ni.GetMemAllocatedMb(), 10))
	kv.line("State", nodeState(ni).show)
	kv.line("Partitions", null(strings.Join(ps.of(n), ",")))
	kv.line("RegisterTime", slurmTimestamp(n.GetRegisteredUnixMs(), e.loc), "LastChangeTime", slurmTimestamp(n.GetUpdatedUnixMs(), e.loc))
	kv.line("LeafSwitch", null(n.GetLeafSwitch()), "SpineSwitch", null(n.GetSpineSwitch()))
	jobs := make([]string, len(ni.GetJobIds()))
	for i, id := range ni.GetJobIds() {
		jobs[i] = strconv.FormatUint(id, 10)
	}
	kv.line("Jobs", null(strings.Join(jobs, ",")))
	if n.GetReason() != "" {
		kv.line("Reason", n.GetReason())
	}
	for _, g := range n.GetTopology().GetGpus() {
		health := "OK"
		if !g.GetHealthy() {
			health = null(g.GetHealthReason())
		}
		kv.line(fmt.Sprintf("GPU%d", g.GetIndex()), strconv.Quote(g.GetModel()), "Memory", fmt.Sprintf("%dMiB", g.GetMemoryMib()),
			"NUMA", strconv.Itoa(int(g.GetNumaNode())), "Health", health)
	}
	return kv
}

// updateNodes handles "update nodename=X state=drain|resume reason=...".
func updateNodes(ctx context.Context, e *env, c *client, args []string) int {
	var names, state, reason string
	for _, a := range args {
		k, v, ok := strings.Cut(a, "=")
		if !ok {
			return e.fail(&usageError{fmt.Sprintf("update: invalid input %q: want KEY=VALUE (quote values with blanks)", a)})
		}
		v = strings.Trim(v, `"'`)
		switch strings.ToLower(k) {
		case "nodename", "node":
			names = v
		case "state":
			state = strings.ToLower(v)
		case "reason":
			reason = v
		default:
			return e.fail(&usageError{fmt.Sprintf("update: unknown key %q (Loom updates nodename, state and reason)", k)})
		}
	}
	if names == "" {
		return e.fail(&usageError{"update: nodename=HOSTLIST is required"})
	}
	hosts, err := api.ExpandHostlist(names)
	if err != nil {
		return e.fail(fmt.Errorf("nodename: %w", err))
	}
	var call func(apiclient.NodeServiceClient, context.Context, *api.NodeStateRequest) error
	switch state {
	case "drain":
		if reason == "" {
			return e.errorf("you must specify a reason when draining a node: reason=\"...\"")
		}
		call = func(n apiclient.NodeServiceClient, ctx context.Context, r *api.NodeStateRequest) error {
			_, err := n.DrainNode(ctx, r)
			return err
		}
	case "resume", "undrain", "idle":
		call = func(n apiclient.NodeServiceClient, ctx context.Context, r *api.NodeStateRequest) error {
			_, err := n.ResumeNode(ctx, r)
			return err
		}
	case "":
		return e.fail(&usageError{"update: state=drain or state=resume is required"})
	default:
		return e.errorf("state=%s: Loom supports state=drain and state=resume", state)
	}
	exit := 0
	for _, h := range hosts {
		req := &api.NodeStateRequest{Name: h, Reason: reason}
		err := c.do(ctx, true, func(ctx context.Context, cc *rpcclient.Conn) error {
			return call(c.nodes(cc), ctx, req)
		})
		if err != nil {
			msg := messageAbout(err, "node "+h+": ", fmt.Sprintf("node %q: ", h))
			if rpcclient.CodeOf(err) == rpcclient.NotFound {
				msg = "invalid node name specified: " + msg
			}
			e.errorf("node %s: %s", h, msg)
			exit = 1
		}
	}
	return exit
}

// changeJobs runs a command on the jobs named in args (JOBID[,JOBID...])
// as the calling user: scontrol hold, release and requeue.
func changeJobs(ctx context.Context, e *env, cmd string, args []string,
	call func(context.Context, apiclient.JobServiceClient, []uint64) (uint64, error)) int {
	ids, err := parseJobIDs(args)
	if err != nil {
		return e.fail(err)
	}
	if len(ids) == 0 {
		return e.fail(&usageError{cmd + ": name the jobs: scontrol " + cmd + " JOBID[,JOBID...]"})
	}
	return withClient(e, func(c *client) int {
		err := c.do(ctx, true, func(ctx context.Context, cc *rpcclient.Conn) error {
			index, err := call(ctx, c.jobs(cc), ids)
			if err == nil {
				c.wrote(index)
			}
			return err
		})
		if err != nil {
			return e.fail(err)
		}
		return 0
	})
}
