package main

import (
	"cmp"
	"context"
	"crypto/sha256"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"log/slog"
	"math"
	"os"
	osexec "os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/loomhpc/loom/agent"
	"github.com/loomhpc/loom/agent/cgroup"
	"github.com/loomhpc/loom/agent/driver/containerd"
	"github.com/loomhpc/loom/agent/driver/exec"
	"github.com/loomhpc/loom/api"
	"github.com/loomhpc/loom/auth"
	"github.com/loomhpc/loom/auth/munge"
	"github.com/loomhpc/loom/cli"
	"github.com/loomhpc/loom/clusterconf"
	"github.com/loomhpc/loom/cmd/internal/loomcmd"
	"github.com/loomhpc/loom/devcluster"
	"github.com/loomhpc/loom/gossip"
	"github.com/loomhpc/loom/server"
)

// checkClusterConfig validates the cluster configuration the server would
// replicate as leader, so that a bad file stops it at start rather than at
// its first election.
func checkClusterConfig(path string, overrides []clusterconf.Override) error {
	c := &api.ClusterConfig{Scheduler: &api.SchedulerSettings{}}
	if path != "" {
		var err error
		if c, err = clusterconf.Load(path); err != nil {
			return err
		}
	}
	return clusterconf.ApplyOverrides(c, overrides)
}

// reloadOnHangup reloads the cluster configuration on each SIGHUP until
// ctx is done: the leader reads its file again (a follower asks it to).
func reloadOnHangup(ctx context.Context, s *server.Server, log *slog.Logger) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
		}
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		resp, err := s.ReloadConfig(rctx)
		cancel()
		switch {
		case err != nil:
			log.Error("SIGHUP: cluster configuration not reloaded", "err", err)
		case resp.Changed:
			log.Info("SIGHUP: cluster configuration reloaded", "index", resp.Index, "sha256", resp.Config.GetSha256())
		default:
			log.Info("SIGHUP: cluster configuration unchanged")
		}
	}
}

// This file only turns flags into the packages' configs and waits for a
// signal; the daemons themselves live in server, agent and devcluster.

func newLogger(level string) *slog.Logger {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		l = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l}))
}

func runServer(ctx context.Context, args []string, sio loomcmd.Stdio) int {
	fs := flag.NewFlagSet("loom server", flag.ContinueOnError)
	fs.SetOutput(sio.Err)
	var cfg server.Config
	fs.StringVar(&cfg.Name, "name", "", "server name (Raft id); default the hostname")
	fs.StringVar(&cfg.DataDir, "data-dir", "/var/lib/loom/server", "Raft log, snapshots and state")
	fs.StringVar(&cfg.RPCAddr, "rpc-addr", ":7070", "gRPC API address")
	fs.StringVar(&cfg.RaftAddr, "raft-addr", "127.0.0.1:7071", "Raft transport address (advertised to peers)")
	fs.StringVar(&cfg.MetricsAddr, "metrics-addr", ":7080", `Prometheus /metrics address, "-" to disable`)
	fs.StringVar(&cfg.MailProg, "mail-prog", "", `program the leader runs as "PROG -s SUBJECT ADDRESS" for each --mail-type event (Slurm's MailProg, e.g. /usr/bin/mail); "" sends no mail`)
	fs.IntVar(&cfg.BootstrapExpect, "bootstrap-expect", 1, "servers that form a new cluster together (1: this one alone; 3 or 5 with --join)")
	join := fs.String("join", "", "other servers' gRPC addresses, comma-separated: to bootstrap with, or to join a running cluster")
	fs.DurationVar(&cfg.HeartbeatTimeout, "raft-heartbeat-timeout", 500*time.Millisecond, "time without a leader's heartbeat before an election")
	fs.DurationVar(&cfg.ElectionTimeout, "raft-election-timeout", 500*time.Millisecond, "time a candidate waits for votes")
	fs.Uint64Var(&cfg.SnapshotThreshold, "raft-snapshot-threshold", 8192, "log entries between snapshots")
	fs.Uint64Var(&cfg.TrailingLogs, "raft-trailing-logs", 10240, "log entries kept after a snapshot for slow followers")
	fs.DurationVar(&cfg.SnapshotInterval, "raft-snapshot-interval", 120*time.Second, "how often Raft checks --raft-snapshot-threshold")
	fs.StringVar(&cfg.GossipAddr, "gossip-addr", "", "gossip (memberlist) address, e.g. :7072; empty disables node failure detection")
	gjoin := fs.String("gossip-join", "", "other servers' gossip addresses, comma-separated")
	fs.DurationVar(&cfg.NodeDownGrace, "node-down-grace", time.Second, "how long a node must be dead in gossip before it is marked DOWN and its jobs requeued")
	authMode := fs.String("auth", string(auth.ModeMunge), "how users prove who they are: munge (a MUNGE credential on every call) or local (peer credentials on --local-socket only)")
	fs.StringVar(&cfg.LocalSocket, "local-socket", "/run/loom/loom.sock", `Unix socket for users on this host (peer credentials; root there is an operator), "" for none`)
	mungeSocket := fs.String("munge-socket", "", "munged's socket; default "+munge.DefaultSocket)
	operators := fs.String("operators", "", "user names of operators, comma-separated (they may act on every job, drain nodes, change Raft peers)")
	operatorGroups := fs.String("operator-groups", "", "groups whose members are operators, comma-separated")
	privateData := fs.Bool("private-data", true, "show other users' job scripts, environments and output paths only to operators (Slurm's PrivateData=jobs)")
	limits := server.DefaultLimits()
	cfg.Limits = &limits
	fs.Func("max-job-count", fmt.Sprintf("jobs the cluster holds, finished ones not yet aged out included (Slurm's MaxJobCount); 0: no limit (default %d)", limits.MaxJobCount), uint32Flag(&limits.MaxJobCount))
	fs.Func("max-jobs-per-user", "unfinished jobs one user may have (Slurm's MaxSubmitJobs per user); 0: no limit (default 0)", uint32Flag(&limits.MaxJobsPerUser))
	fs.Func("max-array-size", fmt.Sprintf("array task indexes must be below this (Slurm's MaxArraySize); 0: only the hard limit of %d tasks (default %d)", api.MaxArrayTasks, limits.MaxArraySize), uint32Flag(&limits.MaxArraySize))
	fs.DurationVar(&limits.MinJobAge, "min-job-age", limits.MinJobAge, "how long finished jobs stay in the live state before they move to the accounting store (Slurm's MinJobAge); 0: forever")
	var sec daemonSecurity
	sec.register(fs, "server", "--server NAME")
	level := fs.String("log-level", "info", "debug, info, warn or error")
	schedulerConfig := schedulerFlags(fs)
	if err := applyConfig(fs, "server", args); err != nil {
		fmt.Fprintln(sio.Err, "loom server:", err)
		return 2
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *gjoin != "" {
		cfg.GossipJoin = strings.Split(*gjoin, ",")
	}
	if cfg.MailProg != "" {
		if _, err := osexec.LookPath(cfg.MailProg); err != nil {
			fmt.Fprintf(sio.Err, "loom server: --mail-prog=%s: %v\n", cfg.MailProg, err)
			return 2
		}
	}
	cfg.Auth = auth.Mode(*authMode)
	if cfg.Auth != auth.ModeMunge && cfg.Auth != auth.ModeLocal {
		fmt.Fprintf(sio.Err, "loom server: --auth=%s: want munge or local\n", *authMode)
		return 2
	}
	if cfg.Auth == auth.ModeLocal && cfg.LocalSocket == "" {
		fmt.Fprintln(sio.Err, "loom server: --auth=local needs --local-socket")
		return 2
	}
	if err := sec.check(cfg.GossipAddr != ""); err != nil {
		fmt.Fprintln(sio.Err, "loom server:", err)
		return 2
	}
	cfg.Policy = auth.Policy{OperatorUsers: splitList(*operators), OperatorGroups: splitList(*operatorGroups)}
	cfg.PublicData = !*privateData
	cfg.TLS = sec.files()
	if *mungeSocket != "" {
		cfg.Munge = munge.Client{Socket: *mungeSocket}
	}
	if *join != "" {
		cfg.Join = strings.Split(*join, ",")
	}
	if cfg.BootstrapExpect > 1 && len(cfg.Join) == 0 {
		fmt.Fprintln(sio.Err, "loom server: --bootstrap-expect needs --join with the other servers' addresses")
		return 2
	}
	cfg.Bootstrap = cfg.BootstrapExpect <= 1 && len(cfg.Join) == 0
	cfg.Scheduler = schedulerConfig()
	cfg.ClusterConfigPath = configPath(args)
	fs.Visit(func(f *flag.Flag) {
		if key, ok := strings.CutPrefix(f.Name, "scheduler-"); ok {
			cfg.ClusterConfigOverrides = append(cfg.ClusterConfigOverrides,
				clusterconf.Override{Key: strings.ReplaceAll(key, "-", "_"), Value: f.Value.String()})
		}
	})
	if err := checkClusterConfig(cfg.ClusterConfigPath, cfg.ClusterConfigOverrides); err != nil {
		fmt.Fprintln(sio.Err, "loom server:", err)
		return 2
	}
	if checkingConfig {
		return 0
	}
	var err error
	if cfg.GossipKeys, err = sec.gossipKeys(); err != nil {
		fmt.Fprintln(sio.Err, "loom server:", err)
		return 1
	}
	if cfg.LocalSocket != "" {
		if err := os.MkdirAll(filepath.Dir(cfg.LocalSocket), 0o755); err != nil {
			fmt.Fprintln(sio.Err, "loom server: --local-socket:", err)
			return 1
		}
	}
	cfg.Logger = newLogger(*level)
	if cfg.GossipAddr != "" && len(cfg.GossipKeys) == 0 {
		cfg.Logger.Warn("gossip is not encrypted (--insecure-gossip): any host that reaches the gossip port can join the pool and report nodes dead")
	}
	s, err := server.New(cfg)
	if err != nil {
		fmt.Fprintln(sio.Err, "loom server:", err)
		return 1
	}
	reloadOnHangup(ctx, s, cfg.Logger)
	cfg.Logger.Info("shutting down")
	if err := s.Close(); err != nil {
		fmt.Fprintln(sio.Err, "loom server:", err)
		return 1
	}
	return 0
}

func runAgent(ctx context.Context, args []string, sio loomcmd.Stdio) int {
	fs := flag.NewFlagSet("loom agent", flag.ContinueOnError)
	fs.SetOutput(sio.Err)
	var cfg agent.Config
	servers := fs.String("servers", envOr("LOOM_ADDR", "127.0.0.1:7070"), "server gRPC addresses, comma-separated")
	parts := fs.String("partitions", "", "partitions this node serves, comma-separated (default: batch)")
	features := fs.String("features", "", "node features for --constraint, comma-separated (the GPU model's short name, as h100, is one without saying)")
	gres := fs.String("gres", "", "generic resources other than GPUs, NAME:COUNT comma-separated (nvme:3600,license_x:4; COUNT takes K, M, G, T, P)")
	fs.StringVar(&cfg.ClientAddr, "client-addr", "", "LOOM_ADDR of the Slurm commands inside jobs (srun in a batch script); default --servers")
	fs.StringVar(&cfg.Name, "name", "", "node name; default the hostname")
	fs.StringVar(&cfg.DataDir, "data-dir", "/var/lib/loom/agent", "scripts and local state")
	fs.StringVar(&cfg.ListenAddr, "listen-addr", ":7073", "agent gRPC address (log streaming)")
	fs.StringVar(&cfg.AdvertiseIP, "advertise-ip", "", "IP that servers and ranks use to reach this node")
	fs.StringVar(&cfg.MetricsAddr, "metrics-addr", ":9400", `Prometheus /metrics address, "-" to disable`)
	fs.StringVar(&cfg.Profile, "profile", "", "simulated GPU profile (dgx-h100, dgx-a100, dgx1-v100, pcie-4, pcie-8)")
	fs.IntVar(&cfg.GPUs, "gpus", 0, "simulate a flat node of N GPUs (when no --profile)")
	fs.StringVar(&cfg.GPUType, "gpu-type", "", "GPU type (as a100) of simulated GPUs (--profile, --gpus, --topology-file), replacing the profile's model")
	fs.StringVar(&cfg.TopologyFile, "topology-file", "", "describe the GPUs with a saved `nvidia-smi topo -m` output")
	fs.BoolVar(&cfg.UseNVML, "nvml", true, "discover GPUs with NVML when the driver is present")
	fs.BoolVar(&cfg.AllowRoot, "allow-root", false, "let jobs submitted by root run as root")
	fs.DurationVar(&cfg.KillGrace, "kill-grace", 10*time.Second, "time between SIGTERM and SIGKILL when stopping a rank")
	fs.DurationVar(&cfg.UsageInterval, "gpu-usage-interval", 10*time.Second, "how often to sample the GPUs to account each rank's utilization-weighted GPU time")
	fs.DurationVar(&cfg.UsageReportInterval, "gpu-usage-report-interval", time.Minute, "how often to report running ranks' GPU time used so far to the servers")
	port := fs.String("ports", "29500-29999", "port range handed to ranks on this node")
	driverName := fs.String("driver", "exec", "task driver: exec (plain processes) or containerd (OCI containers)")
	ctrSocket := fs.String("containerd-socket", containerd.DefaultSocket, "containerd's socket, for --driver containerd")
	fs.StringVar(&cfg.GossipAddr, "gossip-addr", ":7072", "gossip (memberlist) address")
	gjoin := fs.String("gossip-join", "", "servers' gossip addresses, comma-separated; empty disables gossip")
	isolation := fs.String("isolation", "auto", "exec driver: cgroup (confine every rank, refuse to start without), auto (confine where the agent can, warn where not) or none")
	cgroupRoot := fs.String("cgroup-root", "", "exec driver: name of the agent's cgroup under each hierarchy (default loom_NODE_HASH, HASH of the data dir)")
	cgroupMount := fs.String("cgroup-mount", cgroup.DefaultMount, "exec driver: where the cgroup file system is: a cgroup2 mount (or a delegated cgroup2 directory) for v2, the directory of the v1 controllers' mounts for v1")
	deviceDir := fs.String("device-dir", "/dev", "exec driver: where the GPUs' device nodes nvidiaN are")
	privateTmp := fs.Bool("private-tmp", false, "exec driver: give each job a private /tmp and /dev/shm (with isolation) unless its partition's private_tmp says otherwise")
	allowSwap := fs.Bool("allow-swap", false, "exec driver: let ranks swap beyond their memory limit unless their partition's allow_swap says otherwise")
	fs.IntVar(&cfg.ReservedCPUs, "reserved-cpus", 0, "CPUs kept for the system, never given to jobs (CoreSpecCount)")
	fs.Uint64Var(&cfg.ReservedMemMB, "reserved-mem-mb", 0, "memory in MB kept for the system, never given to jobs (MemSpecLimit)")
	var sec daemonSecurity
	sec.register(fs, "agent", "--agent NODE")
	level := fs.String("log-level", "info", "debug, info, warn or error")
	if err := applyConfig(fs, "agent", args); err != nil {
		fmt.Fprintln(sio.Err, "loom agent:", err)
		return 2
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cfg.Servers = strings.Split(*servers, ",")
	if *gjoin != "" {
		cfg.GossipJoin = strings.Split(*gjoin, ",")
	}
	if err := sec.check(len(cfg.GossipJoin) > 0); err != nil {
		fmt.Fprintln(sio.Err, "loom agent:", err)
		return 2
	}
	cfg.TLS = sec.files()
	if *parts != "" {
		cfg.Partitions = strings.Split(*parts, ",")
	}
	if *features != "" {
		cfg.Features = strings.Split(*features, ",")
		if err := api.CheckFeatures(cfg.Features); err != nil {
			fmt.Fprintf(sio.Err, "loom agent: --features=%s: %v\n", *features, err)
			return 2
		}
	}
	if g, err := api.ParseNodeGres(*gres); err != nil {
		fmt.Fprintf(sio.Err, "loom agent: --gres=%s: %v\n", *gres, err)
		return 2
	} else if len(g) > 0 {
		cfg.Gres = g
	}
	if _, err := fmt.Sscanf(*port, "%d-%d", &cfg.PortMin, &cfg.PortMax); err != nil || cfg.PortMin == 0 || cfg.PortMax < cfg.PortMin {
		fmt.Fprintf(sio.Err, "loom agent: --ports=%s: want LOW-HIGH, e.g. 29500-29999\n", *port)
		return 2
	}
	switch *isolation {
	case "auto", "cgroup", "none":
	default:
		fmt.Fprintf(sio.Err, "loom agent: --isolation=%s: want cgroup, auto or none\n", *isolation)
		return 2
	}
	if checkingConfig {
		if *driverName != "exec" && *driverName != "containerd" {
			fmt.Fprintf(sio.Err, "loom agent: --driver=%s: unknown driver (known: exec, containerd)\n", *driverName)
			return 2
		}
		return 0
	}
	var err error
	if cfg.GossipKeys, err = sec.gossipKeys(); err != nil {
		fmt.Fprintln(sio.Err, "loom agent:", err)
		return 1
	}
	switch *driverName {
	case "exec":
		if cfg.Name == "" {
			cfg.Name, _ = os.Hostname()
		}
		iso := execIsolation{mode: *isolation, mount: *cgroupMount, root: *cgroupRoot, deviceDir: *deviceDir, privateTmp: *privateTmp, allowSwap: *allowSwap}
		if err := iso.apply(&cfg, newLogger(*level)); err != nil {
			fmt.Fprintln(sio.Err, "loom agent:", err)
			return 1
		}
	case "containerd":
		if cfg.Name == "" {
			cfg.Name, _ = os.Hostname()
		}
		d, err := containerd.New(containerd.Config{Socket: *ctrSocket, Node: cfg.Name, StateDir: cfg.DataDir, Log: newLogger(*level)})
		if err != nil {
			fmt.Fprintln(sio.Err, "loom agent: --driver=containerd:", err)
			return 1
		}
		defer d.Close()
		cfg.Driver = d
		// Each rank is a container with its own cgroup, devices and mounts.
		cfg.Isolation = "containerd"
		// Containers outlive the agent: stopping it (an upgrade, a
		// restart) leaves ranks running for the next agent to re-attach to.
		cfg.DetachOnClose = true
	default:
		fmt.Fprintf(sio.Err, "loom agent: --driver=%s: unknown driver (known: exec, containerd)\n", *driverName)
		return 2
	}
	cfg.Logger = newLogger(*level)
	cfg.CommandsBinary = clientBinary()
	if len(cfg.GossipJoin) > 0 && len(cfg.GossipKeys) == 0 {
		cfg.Logger.Warn("gossip is not encrypted (--insecure-gossip): any host that reaches the gossip port can join the pool")
	}
	a, err := agent.New(cfg)
	if err != nil {
		fmt.Fprintln(sio.Err, "loom agent:", err)
		return 1
	}
	_ = a.Run(ctx)
	cfg.Logger.Info("shutting down")
	a.Close()
	return 0
}

// defaultCgroupRoot names an agent's cgroup after its node and data dir:
// stable across restarts (re-attach finds the ranks there), and distinct
// for two agents of one name on one host (test clusters), which would
// otherwise kill each other's ranks as unknown.
func defaultCgroupRoot(node, dataDir string) string {
	if abs, err := filepath.Abs(dataDir); err == nil {
		dataDir = abs
	}
	sum := sha256.Sum256([]byte(dataDir))
	safe := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '.' {
			return r
		}
		return '_'
	}, node)
	return fmt.Sprintf("loom_%s_%x", safe, sum[:4])
}

// execIsolation is how the exec driver is asked to confine ranks.
type execIsolation struct {
	mode, mount, root, deviceDir string
	privateTmp, allowSwap        bool
}

// apply makes cfg's exec driver: isolating where it can (or must), with
// the agent told so for the node's label and the ranks' CPU binding.
func (o execIsolation) apply(cfg *agent.Config, log *slog.Logger) error {
	state := filepath.Join(cfg.DataDir, "exec")
	var h cgroup.Hierarchy
	why := errors.New("--isolation=none")
	if o.mode != "none" {
		h, why = cgroup.DetectAt(cmp.Or(o.mount, cgroup.DefaultMount))
	}
	if h.Mode == cgroup.None {
		if o.mode == "cgroup" {
			return fmt.Errorf("--isolation=cgroup: ranks cannot be isolated: %v", why)
		}
		cfg.Isolation = "none: " + why.Error()
		cfg.Driver = exec.New(state, log)
		return nil
	}
	root := o.root
	if root == "" {
		root = defaultCgroupRoot(cfg.Name, cfg.DataDir)
	}
	m, err := cgroup.NewIn(h, root)
	if err != nil {
		return fmt.Errorf("--cgroup-root: %w", err)
	}
	if err := reserveForSystem(m, cfg); err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("isolation: finding the loom binary for the rank shim: %w", err)
	}
	// Every isolating node can make a private /tmp: --private-tmp is only
	// its default, for jobs whose partition does not choose.
	iso := exec.Isolation{Cgroups: m, Shim: []string{self, exec.ShimCommand}, DeviceDir: o.deviceDir,
		PrivateTmpDir: filepath.Join(cfg.DataDir, "jobtmp"), PrivateTmp: o.privateTmp, AllowSwap: o.allowSwap}
	d, err := exec.NewIsolated(state, iso, log)
	if err != nil {
		return err
	}
	cfg.Driver = d
	cfg.Isolation = h.Mode.String() + " " + root
	if cfg.Labels == nil {
		cfg.Labels = map[string]string{}
	}
	cfg.Labels["loom.isolation.limits"] = strings.Join(h.Enforced(), " ")
	log.Info("cgroup hierarchy", "mode", h.Mode.String(), "mount", h.Mount, "root", root,
		"controllers", strings.Join(h.Controllers, " "), "enforced", strings.Join(h.Enforced(), " "))
	if missing := h.Missing(); len(missing) > 0 {
		cfg.Labels["loom.isolation.missing"] = strings.Join(missing, " ")
		log.Warn("the cgroup hierarchy lacks limit controllers: jobs that ask for those limits are refused (--mem without memory); without cpuset ranks are not bound to cores",
			"mode", h.Mode.String(), "mount", h.Mount, "missing", strings.Join(missing, " "))
	}
	// Ranks get cores of their own where the hierarchy can hold them to
	// those; elsewhere a --cpu-bind other than none is refused.
	cfg.BindCPUs = h.Has("cpuset")
	// Isolated ranks outlive the agent, in their cgroups: stopping it (an
	// upgrade, a restart) leaves them running for the next agent.
	cfg.DetachOnClose = true
	return nil
}

// reserveForSystem enforces --reserved-mem-mb and --reserved-cpus on the
// ranks' groups, or refuses them where the hierarchy cannot: the node
// would otherwise register less than it has and still let ranks take it.
// The reserved CPUs are kept out of every rank's cpuset (the agent's CPU
// binder); the memory is kept out of the ranks' root group.
func reserveForSystem(m *cgroup.Manager, cfg *agent.Config) error {
	h := m.Hierarchy()
	if cfg.ReservedCPUs > 0 && !h.Has("cpuset") {
		return fmt.Errorf("--reserved-cpus=%d: the %s hierarchy at %s has no cpuset controller, so ranks could run on the reserved CPUs", cfg.ReservedCPUs, h.Mode, h.Mount)
	}
	if cfg.ReservedMemMB == 0 {
		return nil
	}
	host, err := cgroup.HostMemory()
	if err != nil {
		return fmt.Errorf("--reserved-mem-mb: %w", err)
	}
	reserved := int64(cfg.ReservedMemMB) << 20
	if reserved >= host {
		return fmt.Errorf("--reserved-mem-mb=%d: the host has %d MB", cfg.ReservedMemMB, host>>20)
	}
	if err := m.CapMemory(host - reserved); err != nil {
		return fmt.Errorf("--reserved-mem-mb=%d: %w", cfg.ReservedMemMB, err)
	}
	return nil
}

func runDev(ctx context.Context, args []string, sio loomcmd.Stdio) int {
	fs := flag.NewFlagSet("loom dev", flag.ContinueOnError)
	fs.SetOutput(sio.Err)
	var o devcluster.Options
	fs.IntVar(&o.Agents, "agents", 2, "number of simulated GPU nodes")
	fs.StringVar(&o.Profile, "profile", "dgx-h100", `GPU profile of every node, or "flat" with --gpus`)
	fs.IntVar(&o.GPUs, "gpus", 8, "GPUs per node for --profile flat")
	fs.StringVar(&o.GPUType, "gpu-type", "", "GPU type (as a100) of every node's simulated GPUs, replacing the profile's model")
	gres := fs.String("gres", "", "generic resources of every node besides GPUs, as loom agent --gres (nvme:3600,license_x:4)")
	fs.StringVar(&o.RPCAddr, "rpc-addr", "127.0.0.1:7070", "server gRPC address")
	fs.StringVar(&o.DataDir, "data-dir", "", "keep state here instead of a temporary dir")
	fs.BoolVar(&o.Metrics, "metrics", true, "serve /metrics (server on 127.0.0.1:7080)")
	configFile := fs.String("config", "", "a loom.toml: its partitions, QoS and switches for the server, its [[dev.nodes]] for the nodes (replaces --agents and --profile); see examples/cluster.toml")
	var scripts stringList
	fs.Var(&scripts, "run", "submit this batch script, follow its output, and exit with its result; repeat to run several in turn")
	level := fs.String("log-level", "warn", "debug, info, warn or error")
	var err error
	if err = fs.Parse(args); err != nil {
		return 2
	}
	if o.Gres, err = api.ParseNodeGres(*gres); err != nil {
		fmt.Fprintf(sio.Err, "loom dev: --gres=%s: %v\n", *gres, err)
		return 2
	}
	o.Logger = newLogger(*level)
	o.CommandsBinary = clientBinary()
	if *configFile != "" {
		f, err := devcluster.ReadConfig(*configFile)
		if err != nil {
			fmt.Fprintln(sio.Err, "loom dev:", err)
			return 1
		}
		o.Cluster, o.Nodes = f.Cluster, f.Nodes
	}
	if o.Socket, err = devSocket(); err != nil {
		fmt.Fprintln(sio.Err, "loom dev:", err)
		return 1
	}
	c, err := devcluster.Start(ctx, o)
	if err != nil {
		fmt.Fprintln(sio.Err, "loom dev:", err)
		return 1
	}
	defer c.Close()
	shape := o.Profile
	if *configFile != "" {
		shape = *configFile
	}
	fmt.Fprintf(sio.Out, "loom dev: 1 server at %s, %d agents (%s), data in %s\n", c.Addr(), len(c.Agents), shape, c.DataDir())
	if len(scripts) > 0 {
		for i, script := range scripts {
			if i > 0 {
				fmt.Fprintln(sio.Out)
			}
			state, err := c.RunScript(ctx, script, sio.Out, sio.Err)
			if err != nil {
				fmt.Fprintln(sio.Err, "loom dev:", err)
				return 1
			}
			fmt.Fprintf(sio.Out, "\njob state: %s\n", state)
			if state != api.JobState_COMPLETED {
				return 1
			}
		}
		return 0
	}
	fmt.Fprintf(sio.Out, `
Submit from another shell, as the same user (the commands find this
cluster's socket, %s, by themselves):
  bin/sbatch -N 2 --ntasks-per-node=4 --gpus-per-node=4 --wrap 'env | grep -E "^(RANK|CUDA)"'
  bin/squeue; bin/sinfo; bin/sacct

Ctrl-C stops the cluster.
`, c.Addr())
	<-ctx.Done()
	fmt.Fprintln(sio.Out, "\nloom dev: stopping")
	return 0
}

// devSocket makes the directory of this user's dev socket (cli.DevSocket),
// where the commands look for a dev cluster when LOOM_ADDR is unset, and
// returns the socket's path. The directory must be this user's alone: a
// socket that someone else could replace would receive this user's jobs.
func devSocket() (string, error) {
	sock := cli.DevSocket(os.Getuid())
	dir := filepath.Dir(sock)
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return "", err
	}
	if err := cli.CheckDevSocketDir(dir, os.Getuid()); err != nil {
		return "", fmt.Errorf("dev socket: %w: remove it, or start loom dev from a login with another TMPDIR", err)
	}
	return sock, nil
}

// clientBinary is the loom client next to this executable (make build puts
// bin/loom and bin/loomd together), which job steps get as srun and
// scontrol: it starts faster than loomd, which runs the Slurm commands as
// well and is what the agent links when there is no client beside it ("").
func clientBinary() string {
	self, err := os.Executable()
	if err != nil {
		return ""
	}
	p := filepath.Join(filepath.Dir(self), "loom")
	if fi, err := os.Stat(p); err != nil || !fi.Mode().IsRegular() || fi.Mode()&0o111 == 0 {
		return ""
	}
	return p
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// splitList splits a comma-separated flag, dropping empty items.
func splitList(s string) []string {
	var out []string
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}

func parseKeys(s string) ([][]byte, error) {
	var keys [][]byte
	for _, k := range strings.Split(s, ",") {
		if k = strings.TrimSpace(k); k == "" {
			continue
		}
		b, err := gossip.DecodeKey(k)
		if err != nil {
			return nil, err
		}
		keys = append(keys, b)
	}
	return keys, nil
}

// stringList is a flag that may be given more than once.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }

// uint32Flag parses a flag's value into *p, naming the bound when it is
// out of range.
func uint32Flag(p *uint32) func(string) error {
	return func(v string) error {
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return fmt.Errorf("%q is not a whole number from 0 to %d", v, uint32(math.MaxUint32))
		}
		*p = uint32(n)
		return nil
	}
}
