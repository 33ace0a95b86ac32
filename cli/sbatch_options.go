package cli

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/loomhpc/loom/api"
)

// sbatchOpts collects sbatch's options before they become a JobSpec.
type sbatchOpts struct {
	spec     api.JobSpec
	wrap     string
	hasWrap  bool
	chdir    string
	export   string // --export as given; "" means ALL
	parsable bool
	wait     bool // sbatch --wait
	testOnly bool // --test-only: ask when the job would start, submit nothing
	// ntasksPerGPU is --ntasks-per-gpu, resolved into a task or GPU count
	// once every option is read (resolveNtasksPerGPU).
	ntasksPerGPU uint32
	help         bool
	usage        bool
	now          func() time.Time // for --begin
}

// ignoredOption is what the setter of a recognised but unsupported option
// returns: the caller warns and goes on.
type ignoredOption struct{}

func (ignoredOption) Error() string { return "not supported by Loom yet; ignored" }

// errIgnored is the single ignoredOption value.
var errIgnored error = ignoredOption{}

// sbatchOptions returns sbatch's option table, writing into o.
func sbatchOptions(o *sbatchOpts) []*option {
	s := &o.spec
	opts := []*option{
		{long: "job-name", short: 'J', arg: requiredArg, meta: "NAME", help: "name of the job",
			set: func(v string) error {
				if v == "" {
					return errors.New("empty job name")
				}
				s.Name = v
				return nil
			}},
		{long: "nodes", short: 'N', arg: requiredArg, meta: "N[-M]", help: "number of nodes, or a range", set: func(v string) error {
			lo, hi, err := parseNodeRange(v)
			s.NodesMin, s.NodesMax = lo, hi
			return err
		}},
		{long: "ntasks", short: 'n', arg: requiredArg, meta: "N", help: "number of tasks (ranks)", set: setCount(&s.Ntasks, "task count")},
		{long: "ntasks-per-node", arg: requiredArg, meta: "N", help: "tasks on each node", set: setCount(&s.NtasksPerNode, "task count")},
		{long: "tasks-per-node", arg: requiredArg, meta: "N", set: setCount(&s.NtasksPerNode, "task count")}, // Slurm's alias
		{long: "ntasks-per-gpu", arg: requiredArg, meta: "N", help: "N tasks for every GPU: the task count from the GPUs, or the GPUs from --ntasks", set: setCount(&o.ntasksPerGPU, "task count")},
		{long: "cpus-per-task", short: 'c', arg: requiredArg, meta: "N", help: "CPUs for each task", set: setCount(&s.CpusPerTask, "CPU count")},
		{long: "gpus", short: 'G', arg: requiredArg, meta: "[TYPE:]N", help: "GPUs for the whole job", set: setGPUs(s, &s.Gpus)},
		{long: "gpus-per-node", arg: requiredArg, meta: "[TYPE:]N", help: "GPUs on each node", set: setGPUs(s, &s.GpusPerNode)},
		{long: "gpus-per-task", arg: requiredArg, meta: "[TYPE:]N", help: "GPUs for each task", set: setGPUs(s, &s.GpusPerTask)},
		{long: "gres", arg: requiredArg, meta: "gpu[:TYPE]:N,NAME:N", help: "generic resources per node: GPUs, and what nodes declare (nvme:200)", set: func(v string) error { return parseGres(s, v) }},
		{long: "mem", arg: requiredArg, meta: "SIZE[K|M|G|T]", help: "memory per node (default unit MB)", set: setMem(s, &s.MemPerNodeMb)},
		{long: "mem-per-cpu", arg: requiredArg, meta: "SIZE[K|M|G|T]", help: "memory per CPU: a node gets its CPUs times SIZE", set: setMem(s, &s.MemPerCpuMb)},
		{long: "mem-per-gpu", arg: requiredArg, meta: "SIZE[K|M|G|T]", help: "memory per GPU: a node gets its GPUs times SIZE", set: setMem(s, &s.MemPerGpuMb)},
		{long: "cpus-per-gpu", arg: requiredArg, meta: "N", help: "CPUs per GPU: a node gets at least its GPUs times N CPUs", set: setCount(&s.CpusPerGpu, "CPU count")},
		{long: "constraint", short: 'C', arg: requiredArg, meta: "FEATURES", help: "only nodes with these features: a&b, a|b, [a|b] (all nodes the same one)", set: func(v string) error {
			if _, err := api.ParseConstraint(v); err != nil {
				var ce *api.ConstraintError
				if errors.As(err, &ce) {
					return fmt.Errorf("position %d: %s", ce.Pos, ce.Msg)
				}
				return err
			}
			s.Constraint = v
			return nil
		}},
		{long: "cpu-bind", arg: requiredArg, meta: "[verbose,]TYPE", help: "bind each task to its own cores (cores or threads, the default), its NUMA node's (sockets, ldoms), all of the job's on the node (none), or as rank, map_cpu:LIST, mask_cpu:LIST say", set: setCPUBind(s)},
		// Slurm's older spelling, which launchers still pass (Open MPI's
		// mpirun runs "srun --cpu_bind=none ... orted").
		{long: "cpu_bind", arg: requiredArg, set: setCPUBind(s)},
		{long: "reservation", arg: requiredArg, meta: "NAME", help: "run in this advance reservation: on its nodes, in its window (scontrol show reservation)", set: func(v string) error {
			if v == "" || strings.ContainsAny(v, " \t,") {
				return fmt.Errorf("%q: give one reservation name", v)
			}
			s.Reservation = v
			return nil
		}},
		{long: "comment", arg: requiredArg, meta: "TEXT", help: "a comment kept with the job (scontrol show job)", set: func(v string) error {
			if len(v) > maxCommentBytes {
				return fmt.Errorf("%d bytes is over the %d byte limit", len(v), maxCommentBytes)
			}
			s.Comment = v
			return nil
		}},
		{long: "mail-type", arg: requiredArg, meta: "TYPE,...", help: "mail on BEGIN, END, FAIL, REQUEUE or ALL, through the servers' mail_prog", set: func(v string) error {
			for _, t := range strings.Split(v, ",") {
				if !slices.Contains(api.MailTypes, t) {
					return fmt.Errorf("%q is not one of %s", t, strings.Join(api.MailTypes, ", "))
				}
			}
			s.MailType = v
			return nil
		}},
		{long: "mail-user", arg: requiredArg, meta: "ADDRESS", help: "where --mail-type mail goes (default: your user name)", set: setString(&s.MailUser)},
		{long: "time-min", arg: requiredArg, meta: "TIME", help: "kept and shown; Loom never shortens --time to it", set: func(v string) error {
			sec, err := api.ParseSlurmTime(v)
			if err != nil {
				return err
			}
			if sec < 0 {
				return errors.New("UNLIMITED is no minimum")
			}
			s.TimeMinS = sec
			return nil
		}},
		{long: "time", short: 't', arg: requiredArg, meta: "TIME", help: "time limit: M, M:S, H:M:S, D-H, D-H:M, D-H:M:S or UNLIMITED", set: func(v string) error {
			sec, err := api.ParseSlurmTime(v)
			if err != nil {
				var te *api.TimeFormatError
				if errors.As(err, &te) {
					return errors.New(te.Msg + " (want M, M:S, H:M:S, D-H, D-H:M, D-H:M:S or UNLIMITED)")
				}
				return err
			}
			s.TimeLimitS = sec
			return nil
		}},
		{long: "output", short: 'o', arg: requiredArg, meta: "PATTERN", help: "stdout file; %j %x %t %N %A %a %u %% are expanded on the node", set: setString(&s.Output)},
		{long: "error", short: 'e', arg: requiredArg, meta: "PATTERN", help: "stderr file (default: with stdout)", set: setString(&s.Error)},
		{long: "partition", short: 'p', arg: requiredArg, meta: "NAME", help: "partition", set: setString(&s.Partition)},
		{long: "account", short: 'A', arg: requiredArg, meta: "NAME", help: "account to charge", set: setString(&s.Account)},
		{long: "qos", short: 'q', arg: requiredArg, meta: "NAME", help: "quality of service", set: setString(&s.Qos)},
		{long: "wrap", arg: requiredArg, meta: "COMMAND", help: "run COMMAND under /bin/sh instead of a script", set: func(v string) error {
			o.wrap, o.hasWrap = v, true
			return nil
		}},
		{long: "chdir", short: 'D', arg: requiredArg, meta: "DIR", help: "working directory (default: the current one)", set: func(v string) error {
			if v == "" {
				return errors.New("empty directory")
			}
			o.chdir = v
			return nil
		}},
		{long: "export", arg: requiredArg, meta: "ALL|NONE|VAR[=VAL],...", help: "environment to pass (default ALL)", set: func(v string) error {
			if _, err := exportEnv(v, nil); err != nil {
				return err
			}
			o.export = v
			return nil
		}},
		{long: "requeue", arg: noArg, help: "requeue the job after a node failure or preemption", set: setOptBool(&s.Requeue, true)},
		{long: "no-requeue", arg: noArg, help: "never requeue the job", set: setOptBool(&s.Requeue, false)},
		{long: "every-rank", arg: noArg, help: "run the script on every task of the allocation (Loom's model before job steps) instead of once", set: func(string) error {
			s.EveryRank = true
			return nil
		}},
		{long: "exclusive", arg: optionalArg, meta: "", help: "do not share nodes with other jobs", set: func(v string) error {
			if v != "" {
				return fmt.Errorf("only plain --exclusive is supported, not --exclusive=%s", v)
			}
			s.Exclusive = true
			return nil
		}},
		{long: "nice", arg: optionalArg, meta: "ADJ", help: "lower the priority by ADJ (default 100)", set: func(v string) error {
			if v == "" {
				s.Nice = 100
				return nil
			}
			n, err := strconv.ParseInt(v, 10, 32)
			if err != nil {
				return fmt.Errorf("%q is not a whole number", v)
			}
			if n < -10000 || n > 10000 {
				return fmt.Errorf("%d is outside -10000..10000", n)
			}
			s.Nice = int32(n)
			return nil
		}},
		{long: "dependency", short: 'd', arg: requiredArg, meta: "TYPE:JOBID[:JOBID],...", help: "start after other jobs (afterok, afterany, afternotok, after, singleton)", set: func(v string) error {
			if err := checkDependency(v); err != nil {
				return err
			}
			s.Dependency = v
			return nil
		}},
		{long: "image", arg: requiredArg, meta: "REF", help: "OCI image or root file system to run in (Loom)", set: setString(&s.Image)},
		{long: "container-image", arg: requiredArg, meta: "REF", set: setString(&s.Image)}, // pyxis spelling
		{long: "mount", arg: requiredArg, meta: "SRC:DST[:ro],...", help: "bind mounts into the image (Loom)", set: appendList(&s.Mounts)},
		{long: "container-mounts", arg: requiredArg, meta: "SRC:DST,...", set: appendList(&s.Mounts)}, // pyxis spelling
		{long: "max-restarts", arg: requiredArg, meta: "N", help: "requeue at most N times (Loom)", set: func(v string) error {
			n, err := strconv.ParseUint(v, 10, 32)
			if err != nil {
				return fmt.Errorf("%q is not a whole number", v)
			}
			s.MaxRestarts = proto.Uint32(uint32(n))
			return nil
		}},
		{long: "array", short: 'a', arg: requiredArg, meta: "INDEXES", help: "a job array: 0-99, 1,3,5-7, 0-15:4, with %N to run at most N at once", set: func(v string) error {
			if _, err := api.ParseArray(v); err != nil {
				return errors.New(strings.TrimPrefix(err.Error(), "--array="+v+": "))
			}
			s.Array = v
			return nil
		}},
		{long: "begin", short: 'b', arg: requiredArg, meta: "TIME", help: "not before TIME: now+N[units], HH:MM, YYYY-MM-DD[THH:MM], midnight, noon, tomorrow", set: func(v string) error {
			now := time.Now
			if o.now != nil {
				now = o.now
			}
			t, err := parseBegin(v, now())
			if err != nil {
				return err
			}
			s.BeginUnixMs = t.UnixMilli()
			return nil
		}},
		{long: "signal", arg: requiredArg, meta: "[{R|B}:]SIG[@SECS]", help: "send SIG to every rank SECS (default 60) before the time limit", set: func(v string) error {
			if _, _, err := api.ParseSignal(v); err != nil {
				return err
			}
			s.Signal = v
			return nil
		}},
		{long: "open-mode", arg: requiredArg, meta: "append|truncate", help: "keep or empty the output files when the job starts (default truncate)", set: func(v string) error {
			if v != api.OpenModeAppend && v != api.OpenModeTruncate {
				return fmt.Errorf("%q is neither %s nor %s", v, api.OpenModeAppend, api.OpenModeTruncate)
			}
			s.OpenMode = v
			return nil
		}},
		{long: "exclude", short: 'x', arg: requiredArg, meta: "HOSTLIST", help: "never run on these nodes (node[1-4,7],gpu3)", set: func(v string) error {
			names, err := nodeNames(v)
			s.Exclude = append(s.Exclude, names...)
			return err
		}},
		{long: "nodelist", short: 'w', arg: requiredArg, meta: "HOSTLIST", help: "run on exactly these nodes (node[1-4]); sets --nodes to their number", set: func(v string) error {
			names, err := nodeNames(v)
			s.Nodelist = names
			return err
		}},
		{long: "wait", short: 'W', arg: noArg, help: "wait for the job to end and exit with its exit code", set: setBool(&o.wait, true)},
		{long: "hold", short: 'H', arg: noArg, help: "submit held; run it with scontrol release", set: func(string) error { s.Hold = true; return nil }},
		{long: "switches", arg: requiredArg, meta: "N[@TIME]", help: "at most N leaf switches, waiting up to TIME for such a placement", set: func(v string) error {
			count, wait, hasWait := strings.Cut(v, "@")
			n, err := strconv.ParseUint(count, 10, 32)
			if err != nil || n == 0 {
				return fmt.Errorf("switch count %q is not a positive number", count)
			}
			s.Switches = uint32(n)
			if hasWait {
				sec, err := api.ParseSlurmTime(wait)
				if err != nil {
					return fmt.Errorf("wait %q: %v", wait, err)
				}
				s.SwitchesWaitS = sec
			}
			return nil
		}},
		{long: "test-only", arg: noArg, help: "say when and where the job would start now, and submit nothing", set: setBool(&o.testOnly, true)},
		{long: "parsable", arg: noArg, help: "print only the job id", set: setBool(&o.parsable, true)},
		{long: "quiet", short: 'Q', arg: noArg, help: "accepted for compatibility", set: func(string) error { return nil }},
		{long: "verbose", short: 'v', arg: noArg, set: func(string) error { return nil }},
		{long: "help", short: 'h', arg: noArg, help: "show this help", set: setBool(&o.help, true)},
		{long: "usage", arg: noArg, set: setBool(&o.usage, true)},
	}

	// Options that change where, when or how much a job runs are refused
	// rather than silently dropped: running a job at the wrong time, on
	// the wrong nodes or with other resources than asked is worse than not
	// running it.
	for _, r := range []struct {
		long  string
		short byte
		arg   argKind
		why   string
	}{
		{"input", 'i', requiredArg, "batch jobs read no stdin in Loom"},
		{"gpus-per-socket", 0, requiredArg, "Loom does not place by socket: give --gpus-per-node"},
		{"sockets-per-node", 0, requiredArg, "Loom does not place by socket"},
		{"cores-per-socket", 0, requiredArg, "Loom does not place by socket or core: give --cpus-per-task"},
		{"threads-per-core", 0, requiredArg, "Loom does not place by hardware thread"},
		{"ntasks-per-socket", 0, requiredArg, "Loom does not place by socket"},
		{"ntasks-per-core", 0, requiredArg, "Loom does not place by core"},
		{"hint", 0, requiredArg, "Loom does not place by core or hardware thread"},
		{"core-spec", 'S', requiredArg, "an admin reserves the system's cores on each node (loom agent --reserved-cpus), not a job"},
		{"thread-spec", 0, requiredArg, "Loom reserves no threads for the system"},
		{"mincpus", 0, requiredArg, "not supported yet: give --cpus-per-task"},
		{"tmp", 0, requiredArg, "Loom does not schedule local disk"},
		{"overcommit", 'O', noArg, "Loom gives every task its CPUs"},
		{"oversubscribe", 's', noArg, "Loom does not oversubscribe CPUs or GPUs"},
		{"spread-job", 0, noArg, "Loom places on the fewest nodes"},
		{"licenses", 'L', requiredArg, "Loom does not schedule licenses"},
		{"prefer", 0, requiredArg, "Loom has no soft constraints: give --constraint"},
		{"tres-per-task", 0, requiredArg, "not supported yet: give --cpus-per-task and --gpus-per-task"},
		{"gres-flags", 0, requiredArg, "Loom places GPUs by its own topology rules"},
		{"priority", 0, requiredArg, "only an operator sets a priority: use --nice"},
		{"deadline", 0, requiredArg, "not supported yet"},
		{"kill-on-invalid-dep", 0, requiredArg, "not supported yet"},
		{"no-kill", 'k', optionalArg, "Loom ends or requeues a job whose node fails"},
		{"requeue-exit", 0, requiredArg, "not supported yet"},
		{"cluster", 'M', requiredArg, "Loom runs one cluster, the one loom dials"},
		{"clusters", 0, requiredArg, "Loom runs one cluster, the one loom dials"},
		{"container", 0, requiredArg, "give an image with --image or --container-image"},
		{"network", 0, requiredArg, "not supported"},
		{"uid", 0, requiredArg, "a job runs as the user who submits it"},
		{"gid", 0, requiredArg, "a job runs as the user who submits it"},
	} {
		why := r.why
		opts = append(opts, &option{long: r.long, short: r.short, arg: r.arg, meta: "X",
			set: func(string) error { return errors.New(why) }})
	}
	// Loom already does what these ask: the fewest nodes first, tasks in
	// blocks.
	opts = append(opts, &option{long: "use-min-nodes", arg: noArg, set: func(string) error { return nil }},
		&option{long: "distribution", short: 'm', arg: requiredArg, meta: "X", set: func(v string) error {
			if v != "block" {
				return errors.New("only block (Slurm's default) is accepted: Loom places tasks in blocks")
			}
			return nil
		}})
	// Options that change neither what a job gets nor where or when it
	// runs — how tasks bind to what they were given, accounting, profiling
	// — are warned about and ignored.
	for _, r := range []struct {
		long  string
		short byte
		arg   argKind
	}{
		{"gpu-bind", 0, requiredArg}, {"mem-bind", 0, requiredArg},
		{"gpu-freq", 0, requiredArg}, {"propagate", 0, optionalArg}, {"get-user-env", 0, optionalArg},
		{"wckey", 0, requiredArg}, {"profile", 0, requiredArg}, {"acctg-freq", 0, requiredArg},
		{"delay-boot", 0, requiredArg}, {"mcs-label", 0, requiredArg}, {"power", 0, requiredArg},
	} {
		opts = append(opts, &option{long: r.long, short: r.short, arg: r.arg, meta: "X",
			set: func(string) error { return errIgnored }})
	}
	return opts
}

// parseCount parses a positive count that fits a uint32.
func parseCount(v, what string) (uint32, error) {
	n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 32)
	if err != nil {
		if _, rerr := strconv.ParseUint(strings.TrimSpace(v), 10, 64); rerr == nil {
			return 0, fmt.Errorf("%s %s is too large", what, v)
		}
		return 0, fmt.Errorf("%s %q is not a number", what, v)
	}
	if n == 0 {
		return 0, fmt.Errorf("%s must be at least 1", what)
	}
	return uint32(n), nil
}

func setCount(p *uint32, what string) func(string) error {
	return func(v string) error {
		n, err := parseCount(v, what)
		*p = n
		return err
	}
}

// parseNodeRange parses --nodes: "N" (exactly N) or "MIN-MAX".
func parseNodeRange(v string) (lo, hi uint32, err error) {
	a, b, isRange := strings.Cut(v, "-")
	if lo, err = parseCount(a, "node count"); err != nil {
		return 0, 0, err
	}
	if !isRange {
		return lo, lo, nil
	}
	if hi, err = parseCount(b, "maximum node count"); err != nil {
		return 0, 0, err
	}
	if hi < lo {
		return 0, 0, fmt.Errorf("maximum %d is below minimum %d", hi, lo)
	}
	return lo, hi, nil
}

// setGPUs parses "[TYPE:]N" or "TYPE" (one GPU) into *count and the
// spec's GPU type. The GPU options replace one another, as each says how
// many GPUs the job needs.
func setGPUs(s *api.JobSpec, count *uint32) func(string) error {
	return func(v string) error {
		typ, n, hasType := strings.Cut(v, ":")
		switch {
		case !hasType && v != "" && (v[0] < '0' || v[0] > '9'):
			// As in --gres, a type alone is one GPU of the type.
			typ, n, hasType = v, "1", true
		case !hasType:
			n, typ = v, ""
		}
		c, err := parseCount(n, "GPU count")
		if err != nil {
			return err
		}
		if hasType && typ == "" {
			return errors.New("empty GPU type")
		}
		s.Gpus, s.GpusPerNode, s.GpusPerTask = 0, 0, 0
		*count = c
		s.GpuType = typ
		return nil
	}
}

// parseGres parses --gres as Slurm does: a comma-separated list of
// NAME[[:TYPE]:COUNT], each per node. gpu[:TYPE][:N] sets the GPUs
// (gpu:TYPE alone is one of the type); any other NAME[:COUNT] is a
// generic resource the nodes declare (loom agent --gres), its COUNT one
// by default and taking a K, M, G, T or P suffix (powers of 1024). Each
// --gres replaces the generic resources of an earlier one; "none" clears
// them and the GPUs.
func parseGres(s *api.JobSpec, v string) error {
	if v == "none" {
		s.GpusPerNode, s.GpuType, s.GresPerNode = 0, "", nil
		return nil
	}
	gres := map[string]uint64{}
	seen := map[string]bool{}
	for _, item := range strings.Split(v, ",") {
		item = strings.TrimSpace(item)
		// Slurm allows a socket binding suffix, gpu:2(S:0-1); it is a
		// hint Loom's topology placement supersedes.
		if i := strings.IndexByte(item, '('); i >= 0 {
			item = item[:i]
		}
		parts := strings.Split(item, ":")
		name := parts[0]
		if seen[name] {
			return fmt.Errorf("%s given twice", name)
		}
		seen[name] = true
		if name != api.GresGPU {
			n, err := parseGresItem(item, parts)
			if err != nil {
				return err
			}
			if n != 0 { // NAME:0 asks for none, as gpu:0 does
				gres[name] = n
			}
			continue
		}
		if err := parseGresGPU(s, item, parts); err != nil {
			return err
		}
	}
	s.GresPerNode = nil
	if len(gres) > 0 {
		s.GresPerNode = gres
	}
	return nil
}

// parseGresItem parses one generic resource other than gpu: NAME or
// NAME:COUNT.
func parseGresItem(item string, parts []string) (uint64, error) {
	if err := api.CheckGresName(parts[0]); err != nil {
		return 0, err
	}
	switch len(parts) {
	case 1:
		return 1, nil
	case 2:
		if c := parts[1]; c == "" || c[0] < '0' || c[0] > '9' {
			return 0, fmt.Errorf("%q: %s has no types in Loom; give %s:COUNT", item, parts[0], parts[0])
		}
		n, err := api.ParseGresCount(parts[1])
		if err != nil {
			return 0, fmt.Errorf("%s %w", parts[0], err)
		}
		return n, nil
	}
	return 0, fmt.Errorf("%q: %s has no types in Loom; give %s:COUNT", item, parts[0], parts[0])
}

// parseGresGPU parses gpu[:TYPE][:N] into the spec's GPUs.
func parseGresGPU(s *api.JobSpec, item string, parts []string) error {
	var typ, cnt string
	switch len(parts) {
	case 1:
		cnt = "1"
	case 2:
		// As Slurm reads it, gpu:N is N GPUs and gpu:TYPE one GPU of
		// the type.
		cnt = parts[1]
		if cnt == "" {
			return errors.New("gpu: is missing its count or type")
		}
		if cnt[0] < '0' || cnt[0] > '9' {
			typ, cnt = cnt, "1"
		}
	case 3:
		typ, cnt = parts[1], parts[2]
		if typ == "" {
			return errors.New("empty GPU type")
		}
	default:
		return fmt.Errorf("%q has too many ':' fields (want gpu[:TYPE]:N)", item)
	}
	if strings.Trim(cnt, "0") == "" && cnt != "" {
		// gpu:0 asks for none, as in Slurm.
		s.Gpus, s.GpusPerNode, s.GpusPerTask, s.GpuType = 0, 0, 0, ""
		return nil
	}
	n, err := parseCount(cnt, "GPU count")
	if err != nil {
		return err
	}
	s.Gpus, s.GpusPerNode, s.GpusPerTask = 0, n, 0
	s.GpuType = typ
	return nil
}

// resolveNtasksPerGPU turns --ntasks-per-gpu=N into counts, as Slurm
// 22.05 does: with --ntasks, the job gets ceil(ntasks/N) GPUs; with a GPU
// count (--gpus, or --gpus-per-node/--gres on a fixed number of nodes)
// and no --ntasks, it gets GPUs times N tasks. As in Slurm it does not
// combine with --gpus-per-task, --ntasks-per-node or a node range.
func resolveNtasksPerGPU(o *sbatchOpts) error {
	n, s := o.ntasksPerGPU, &o.spec
	if n == 0 {
		return nil
	}
	nodes := max(s.NodesMin, 1)
	switch {
	case s.GpusPerTask != 0:
		return errors.New("--ntasks-per-gpu: cannot be combined with --gpus-per-task")
	case s.NtasksPerNode != 0:
		return errors.New("--ntasks-per-gpu: cannot be combined with --ntasks-per-node")
	case s.NodesMax > s.NodesMin:
		return fmt.Errorf("--ntasks-per-gpu: cannot be combined with a node range (--nodes=%d-%d)", s.NodesMin, s.NodesMax)
	case s.Ntasks != 0 && s.Gpus == 0 && s.GpusPerNode == 0:
		s.Gpus = (s.Ntasks + n - 1) / n
	case s.Ntasks != 0:
		gpus := s.Gpus
		if gpus == 0 {
			gpus = s.GpusPerNode * nodes
		}
		if s.Ntasks != gpus*n {
			return fmt.Errorf("--ntasks-per-gpu=%d: --ntasks=%d is not %d GPUs times %d", n, s.Ntasks, gpus, n)
		}
	case s.Gpus != 0:
		s.Ntasks = s.Gpus * n
	case s.GpusPerNode != 0:
		s.Ntasks = s.GpusPerNode * nodes * n
	default:
		return errors.New("--ntasks-per-gpu: give --ntasks, or a GPU count with --gpus, --gpus-per-node or --gres=gpu:N")
	}
	return nil
}

// maxCommentBytes bounds --comment, as Slurm's 1024.
const maxCommentBytes = 1024

// setMem sets one of the memory options. They do not replace one another:
// as Slurm does, api.ValidateSpec refuses more than one.
func setMem(s *api.JobSpec, p *uint64) func(string) error {
	return func(v string) error {
		// 0 (Slurm's "all of the node's memory") is stored as 0, "not
		// given".
		mb, err := api.ParseMemMB(v)
		*p = mb
		return err
	}
}

// dependencyTypes are the --dependency kinds Slurm defines and Loom keeps.
var dependencyTypes = []string{"after", "afterany", "afternotok", "afterok", "aftercorr", "singleton"}

// checkDependency validates --dependency=TYPE:ID[:ID...][,|?TYPE:ID...]
// so that a typo is reported at submit time, not as a job that never
// starts.
func checkDependency(v string) error {
	if v == "" {
		return errors.New("empty dependency")
	}
	sep := ","
	if strings.Contains(v, "?") {
		if strings.Contains(v, ",") {
			return errors.New("use either ',' (all) or '?' (any) between dependencies, not both")
		}
		sep = "?"
	}
	for _, item := range strings.Split(v, sep) {
		typ, ids, hasIDs := strings.Cut(item, ":")
		known := false
		for _, t := range dependencyTypes {
			known = known || t == typ
		}
		if !known {
			return fmt.Errorf("dependency type %q is not one of %s", typ, strings.Join(dependencyTypes, ", "))
		}
		if typ == "singleton" {
			if hasIDs {
				return errors.New("singleton takes no job ids")
			}
			continue
		}
		if !hasIDs || ids == "" {
			return fmt.Errorf("%s needs job ids, as in %s:123", typ, typ)
		}
		for _, id := range strings.Split(ids, ":") {
			base, delay, hasDelay := strings.Cut(id, "+")
			base, _, _ = strings.Cut(base, "_") // array task, JOBID_TASK
			if _, err := strconv.ParseUint(base, 10, 64); err != nil {
				return fmt.Errorf("job id %q in %s is not a number", id, typ)
			}
			if hasDelay {
				if typ != "after" {
					return fmt.Errorf("only after takes a +minutes delay, not %s", typ)
				}
				if _, err := strconv.ParseUint(delay, 10, 32); err != nil {
					return fmt.Errorf("delay %q in %s is not a number of minutes", delay, id)
				}
			}
		}
	}
	return nil
}

// exportEnv builds the job environment from --export and the submitting
// environment (KEY=VALUE strings). "" and "ALL" pass everything; "NONE"
// passes nothing; a list passes only the named variables, with
// NAME=VALUE setting one, and ALL in the list adds the rest.
func exportEnv(spec string, environ []string) (map[string]string, error) {
	all := map[string]string{}
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok && k != "" {
			all[k] = v
		}
	}
	out := map[string]string{}
	if spec == "" {
		spec = "ALL"
	}
	if spec == "NONE" {
		return out, nil
	}
	for _, item := range strings.Split(spec, ",") {
		switch item {
		case "ALL":
			for k, v := range all {
				if _, set := out[k]; !set {
					out[k] = v
				}
			}
			continue
		case "NONE":
			return nil, errors.New("NONE cannot be combined with other variables")
		case "":
			return nil, errors.New("empty variable name")
		}
		k, v, hasVal := strings.Cut(item, "=")
		if !validEnvName(k) {
			return nil, fmt.Errorf("%q is not a valid variable name", k)
		}
		if hasVal {
			out[k] = v
		} else if v, ok := all[k]; ok {
			out[k] = v
		}
	}
	return out, nil
}

func validEnvName(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if c != '_' && !('a' <= c && c <= 'z') && !('A' <= c && c <= 'Z') && !(i > 0 && '0' <= c && c <= '9') {
			return false
		}
	}
	return true
}

// nodeNames expands a non-empty hostlist (--exclude, --nodelist).
func nodeNames(hostlist string) ([]string, error) {
	names, err := api.ExpandHostlist(hostlist)
	if err == nil && len(names) == 0 {
		err = errors.New("empty node list")
	}
	return names, err
}

// setCPUBind sets --cpu-bind, refusing what Loom does not implement.
func setCPUBind(s *api.JobSpec) func(string) error {
	return func(v string) error {
		b, err := api.ParseCPUBind(v)
		if err != nil {
			return err
		}
		s.CpuBind = b.String()
		return nil
	}
}
