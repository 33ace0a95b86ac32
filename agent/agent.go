package agent

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/loomhpc/loom/agent/cgroup"
	"github.com/loomhpc/loom/agent/driver"
	"github.com/loomhpc/loom/api"
	"github.com/loomhpc/loom/api/apirpc"
	"github.com/loomhpc/loom/gossip"
	"github.com/loomhpc/loom/gpu"
	"github.com/loomhpc/loom/gpu/metrics"
	"github.com/loomhpc/loom/gpu/probe"
	"github.com/loomhpc/loom/pki"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
)

// Config is one agent's settings.
type Config struct {
	Name        string   // node name; defaults to the hostname
	Servers     []string // server gRPC addresses, tried in order
	DataDir     string   // scripts and local state
	ListenAddr  string   // agent gRPC (logs), default :7073
	AdvertiseIP string   // address ranks and servers reach this node at; default 127.0.0.1 for loopback listens
	MetricsAddr string   // /metrics, default :9400; "-" disables
	Partitions  []string
	Labels      map[string]string
	// Features are the node's features for --constraint, beyond the GPU
	// model's short name, which the node has without saying.
	Features []string
	// Gres are the node's generic resources other than GPUs, name to
	// count (loom agent --gres nvme:3600,license_x:4), as gres.conf's
	// Count: jobs ask for them with --gres and the scheduler counts them.
	Gres map[string]uint64
	// GPUType replaces the model of simulated GPUs (a profile, --gpus, a
	// topology file) with a type, as --gres=gpu:TYPE and --constraint
	// see it; New refuses it for GPUs NVML found.
	GPUType string
	// GPU discovery (see probe.Options).
	Profile      string
	GPUs         int
	TopologyFile string
	UseNVML      bool
	// Ports handed to ranks on this node.
	PortMin, PortMax uint32
	// AllowRoot lets jobs submitted by root run as root. Off by default:
	// nothing a user submitted runs as root unless an admin says so.
	AllowRoot bool
	// KillGrace is the time between SIGTERM and SIGKILL.
	KillGrace time.Duration
	// DetachOnClose leaves ranks running when the agent stops, with their
	// records, for the next agent on this data dir to re-attach to. Only
	// for drivers that re-attach (containerd); otherwise Close stops
	// every rank.
	DetachOnClose bool
	// Gossip: the agent joins the servers' memberlist pool so the leader
	// learns within seconds that it died. Empty GossipJoin: no gossip.
	GossipAddr string   // bind host:port, default :7072
	GossipJoin []string // servers' gossip addresses
	GossipKeys [][]byte // keyring, first key primary
	// TLS names the CA and this node's agent certificate: the agent then
	// dials the servers over mutual TLS and serves logs only to servers.
	// Nil runs both in plaintext (tls = false); New logs a warning.
	TLS    *pki.Files
	Driver driver.Driver
	Logger *slog.Logger
	// CommandsBinary is the loom binary that provides the Slurm commands
	// (srun, scontrol, ...) to job steps: the agent links them under its
	// data dir and appends that dir to the steps' PATH, after what the
	// job's own PATH finds. Default: the agent's own executable.
	CommandsBinary string
	// Isolation says how the driver confines ranks ("cgroup-v1 ROOT",
	// "cgroup-v2 ROOT"), or, when it does not, why ("none: ..."): the
	// node's loom.isolation label, which scontrol show node prints.
	Isolation string
	// BindCPUs gives each rank its own cores (the driver's cpuset) and
	// reports them in SLURM_CPU_BIND*.
	BindCPUs bool
	// ReservedCPUs and ReservedMemMB are kept for the system
	// (CoreSpecCount, MemSpecLimit): the node registers that much less,
	// and with BindCPUs no rank runs on the last ReservedCPUs host CPUs.
	ReservedCPUs  int
	ReservedMemMB uint64
	// ClientAddr is what the Slurm commands inside a job (srun in a batch
	// script) use to reach the servers: their LOOM_ADDR. Default: Servers.
	// A dev or test cluster whose users are known by a local socket sets
	// that socket (unix:///PATH).
	ClientAddr string
	// UsageInterval is how often the agent samples its GPUs to account
	// the GPU time each rank uses (utilization-weighted); default 10 s.
	UsageInterval time.Duration
	// UsageReportInterval is how often the agent reports the GPU time its
	// running ranks have used so far (a rank's end report always carries
	// its final figure); default 1 min.
	UsageReportInterval time.Duration
}

// Agent is a running node agent.
type Agent struct {
	cfg     Config
	log     *slog.Logger
	conn    *grpc.ClientConn
	client  apirpc.AgentServiceClient
	nodes   apirpc.NodeServiceClient
	node    *api.Node // guarded by mu once running
	metrics *agentMetrics
	sampler gpu.Sampler
	usage   *gpuUsage
	gossip  *gossip.Gossip

	grpc    *grpc.Server
	lis     net.Listener
	http    *http.Server
	httpLis net.Listener

	state stateStore // task records, for re-attaching after a restart
	cpus  *cpuMap    // nil without BindCPUs
	// cmdDir holds the Slurm command links steps find on their PATH; ""
	// when there are none.
	cmdDir string

	mu    sync.Mutex
	tasks map[taskKey]*task
	outs  map[outKey]taskOutput // where each rank wrote, for log streaming

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// taskKey names one process the agent supervises: a gang's rank, an
// allocation's slot on this node (step 0), or a job step's task (step
// is the step's id plus one, so that the zero value means "no step").
type taskKey struct {
	job, gen uint64
	rank     uint32
	step     uint32
}

type outKey struct {
	job  uint64
	rank uint32
	step uint32 // as in taskKey
}

type taskOutput struct {
	gen            uint64
	uid            uint32 // the job's user, as whom the files are read
	stdout, stderr string
	done           chan struct{} // closed when the rank has ended
}

// New discovers the node and starts the agent's listeners. Run connects
// it to the servers.
func New(cfg Config) (*Agent, error) {
	if cfg.Name == "" {
		cfg.Name, _ = os.Hostname()
	}
	if len(cfg.Servers) == 0 {
		cfg.Servers = []string{"127.0.0.1:7070"}
	}
	if cfg.ListenAddr == "" {
		cfg.ListenAddr = ":7073"
	}
	if cfg.MetricsAddr == "" {
		cfg.MetricsAddr = ":9400"
	}
	if cfg.UsageInterval <= 0 {
		cfg.UsageInterval = 10 * time.Second
	}
	if cfg.UsageReportInterval <= 0 {
		cfg.UsageReportInterval = time.Minute
	}
	if cfg.KillGrace == 0 {
		cfg.KillGrace = 10 * time.Second
	}
	if cfg.Driver == nil {
		return nil, errors.New("agent: no driver configured")
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	log = log.With("node", cfg.Name)
	if cfg.DataDir == "" {
		return nil, errors.New("agent: data dir not set")
	}
	if err := os.MkdirAll(filepath.Join(cfg.DataDir, "jobs"), 0o711); err != nil {
		return nil, fmt.Errorf("agent: data dir: %w", err)
	}
	state, err := openBoltStore(filepath.Join(cfg.DataDir, "agent.db"))
	if err != nil {
		return nil, err
	}
	found, err := probe.Discover(context.Background(), probe.Options{
		Host: cfg.Name, Profile: cfg.Profile, GPUs: cfg.GPUs, TopologyFile: cfg.TopologyFile,
		UseNVML: cfg.UseNVML, Logger: log,
	})
	if err != nil {
		state.Close()
		return nil, fmt.Errorf("agent: GPU discovery: %w", err)
	}
	if err := nameGPUModels(found.Topology, cfg.GPUType); err != nil {
		state.Close()
		return nil, err
	}
	dialCreds, serveCreds, err := agentCreds(cfg)
	if err != nil {
		state.Close()
		return nil, err
	}
	if cfg.TLS == nil {
		log.Warn("TLS is off (tls = false): this agent takes allocations from, and serves job output to, anyone who reaches its ports")
	}
	lis, err := net.Listen("tcp", cfg.ListenAddr)
	if err != nil {
		state.Close()
		return nil, fmt.Errorf("agent: listen %s: %w", cfg.ListenAddr, err)
	}
	conn, err := grpc.NewClient("loom-servers:///servers", grpc.WithTransportCredentials(dialCreds),
		grpc.WithResolvers(newStaticResolver(cfg.Servers)), apirpc.ClientSizeOption())
	if err != nil {
		lis.Close()
		state.Close()
		return nil, fmt.Errorf("agent: servers %v: %w", cfg.Servers, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	a := &Agent{
		cfg: cfg, log: log, conn: conn, client: apirpc.NewAgentServiceClient(conn), nodes: apirpc.NewNodeServiceClient(conn), lis: lis,
		tasks: map[taskKey]*task{}, outs: map[outKey]taskOutput{}, ctx: ctx, cancel: cancel, state: state,
		usage: newGPUUsage(),
	}
	a.metrics = newAgentMetrics(a)
	a.cmdDir = linkCommands(filepath.Join(cfg.DataDir, "bin"), cfg.CommandsBinary, log)
	cpus, mem, err := reserve(found.CPUs, found.MemoryMB, cfg)
	if err != nil {
		a.Close()
		return nil, err
	}
	labels := maps.Clone(cfg.Labels)
	if labels == nil {
		labels = map[string]string{}
	}
	labels["loom.isolation"] = cmp.Or(cfg.Isolation, "none")
	a.node = &api.Node{
		Name: cfg.Name, Address: a.advertise(lis.Addr()), Cpus: cpus, MemoryMb: mem,
		Partitions: cfg.Partitions, Labels: labels, Topology: found.Topology, Features: cfg.Features,
		Gres:    cfg.Gres,
		PortMin: cfg.PortMin, PortMax: cfg.PortMax, Version: Version,
	}
	// The scheduler chooses each rank's cores near its GPUs from the
	// near cores registered with them, whether or not this node binds.
	host, hostErr := cgroup.HostCPUs()
	if hostErr != nil {
		host = nil
		for c := range int(cpus) + cfg.ReservedCPUs {
			host = append(host, c)
		}
	}
	var gpus []gpu.GPU
	if found.Detail != nil {
		gpus = found.Detail.GPUs
	}
	near, err := nearCores(host, cpus, cfg.ReservedCPUs, gpus)
	if err != nil {
		a.Close()
		return nil, err
	}
	if a.node.Topology != nil {
		a.node.Topology = proto.Clone(a.node.Topology).(*api.Topology)
		setNearCores(a.node.Topology, near)
	}
	if cfg.BindCPUs {
		err := hostErr
		if err == nil {
			a.cpus, err = newCPUMap(host, cfg.ReservedCPUs, near)
		}
		if err != nil {
			a.Close()
			return nil, fmt.Errorf("agent: binding CPUs: %w", err)
		}
	}
	if cfg.Isolation == "" || strings.HasPrefix(cfg.Isolation, "none") {
		log.Warn("RANKS ARE NOT ISOLATED: a rank can open every GPU of the node, use any CPU and memory, and leave processes behind after its job", "isolation", cmp.Or(cfg.Isolation, "none"))
	} else {
		log.Info("ranks are isolated", "isolation", cfg.Isolation, "reserved_cpus", cfg.ReservedCPUs, "reserved_mem_mb", cfg.ReservedMemMB)
	}
	if len(cfg.GossipJoin) > 0 {
		if err := a.startGossip(); err != nil {
			a.Close()
			return nil, err
		}
	}
	a.sampler = a.newSampler(found)
	if marks, err := state.allUsage(); err != nil {
		log.Warn("reading the stored GPU usage counts failed; re-attached ranks count from now", "err", err)
	} else {
		a.usage.restore(marks)
	}
	if err := a.recoverTasks(); err != nil {
		a.Close()
		return nil, err
	}
	a.goFunc(func() { a.watchHealth(a.ctx) })
	a.goFunc(func() { a.trackUsage(a.ctx, a.cfg.UsageInterval, a.cfg.UsageReportInterval) })
	a.grpc = grpc.NewServer(grpc.Creds(serveCreds))
	apirpc.RegisterAgentLogsServer(a.grpc, &logServer{a: a})
	a.goFunc(func() { _ = a.grpc.Serve(lis) })
	if cfg.MetricsAddr != "-" {
		reg := prometheus.NewRegistry()
		reg.MustRegister(a.metrics, metrics.NewCollector(a.sampler, cfg.Name, a.gpuHolder))
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		a.httpLis, err = net.Listen("tcp", cfg.MetricsAddr)
		if err != nil {
			a.Close()
			return nil, fmt.Errorf("agent: metrics listen %s: %w", cfg.MetricsAddr, err)
		}
		a.http = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		a.goFunc(func() { _ = a.http.Serve(a.httpLis) })
		a.node.MetricsAddress = a.advertise(a.httpLis.Addr())
	}
	return a, nil
}

// reserve takes the system's share off the node's CPUs and memory.
func reserve(cpus uint32, memMB uint64, cfg Config) (uint32, uint64, error) {
	if cfg.ReservedCPUs < 0 || uint32(cfg.ReservedCPUs) >= cpus {
		return 0, 0, fmt.Errorf("agent: reserved_cpus=%d: the node has %d CPUs and jobs need at least one", cfg.ReservedCPUs, cpus)
	}
	if cfg.ReservedMemMB >= memMB && cfg.ReservedMemMB > 0 {
		return 0, 0, fmt.Errorf("agent: reserved_mem_mb=%d: the node has %d MB", cfg.ReservedMemMB, memMB)
	}
	return cpus - uint32(cfg.ReservedCPUs), memMB - cfg.ReservedMemMB, nil
}

// agentCreds are the credentials with which the agent dials the servers
// and serves its own port: with TLS, its certificate, which must be the
// agent certificate of its node, and only servers may call it.
func agentCreds(cfg Config) (dial, serve credentials.TransportCredentials, err error) {
	if cfg.TLS == nil {
		return insecure.NewCredentials(), insecure.NewCredentials(), nil
	}
	me, err := cfg.TLS.Identity()
	if err != nil {
		return nil, nil, fmt.Errorf("agent: tls: %w", err)
	}
	if me.Role != pki.RoleAgent || me.Node != cfg.Name {
		return nil, nil, fmt.Errorf("agent: tls_cert %s is the certificate of %s, not of agent %s: make one with loom tls cert create --agent %s", cfg.TLS.Cert, me, cfg.Name, cfg.Name)
	}
	dc, err := pki.DaemonClientConfig(*cfg.TLS)
	if err != nil {
		return nil, nil, fmt.Errorf("agent: tls: %w", err)
	}
	sc, err := pki.ServerConfig(*cfg.TLS, pki.ServerOptions{ClientAuth: pki.ClientCertRequired, Roles: []pki.Role{pki.RoleServer}})
	if err != nil {
		return nil, nil, fmt.Errorf("agent: tls: %w", err)
	}
	return credentials.NewTLS(dc), credentials.NewTLS(sc), nil
}

// Version is the agent's build version, reported at registration.
var Version = "dev"

func (a *Agent) advertise(addr net.Addr) string {
	tcp := addr.(*net.TCPAddr)
	ip := a.cfg.AdvertiseIP
	if ip == "" {
		if tcp.IP.IsUnspecified() || tcp.IP.IsLoopback() {
			ip = "127.0.0.1"
		} else {
			ip = tcp.IP.String()
		}
	}
	return net.JoinHostPort(ip, fmt.Sprint(tcp.Port))
}

func (a *Agent) goFunc(f func()) {
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		f()
	}()
}

// Node is what this agent registers.
func (a *Agent) Node() *api.Node {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.node
}

// MetricsAddr is where /metrics is served, empty when disabled.
func (a *Agent) MetricsAddr() string {
	if a.httpLis == nil {
		return ""
	}
	return a.httpLis.Addr().String()
}

// Run registers with the servers and runs allocations until ctx ends. It
// reconnects on its own when servers restart or fail over.
func (a *Agent) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-a.ctx.Done():
			cancel()
		case <-ctx.Done():
		}
	}()
	backoff := newBackoff(100*time.Millisecond, 3*time.Second)
	for ctx.Err() == nil {
		err := a.session(ctx)
		if ctx.Err() != nil {
			break
		}
		d := backoff.next()
		a.log.Warn("lost the servers; retrying", "err", err, "in", d)
		select {
		case <-time.After(d):
		case <-ctx.Done():
		}
	}
	return nil
}

// session registers once and follows the allocation stream until it breaks.
func (a *Agent) session(ctx context.Context) error {
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	node := a.Node()
	_, err := a.client.Register(rctx, &api.RegisterRequest{Node: node}, grpc.WaitForReady(true))
	cancel()
	if err != nil {
		return fmt.Errorf("register: %w", err)
	}
	a.log.Info("registered", "gpus", len(node.Topology.GetGpus()), "cpus", node.Cpus, "addr", node.Address)
	stream, err := a.client.WatchAllocations(ctx, &api.WatchAllocationsRequest{Node: a.cfg.Name})
	if err != nil {
		return fmt.Errorf("watch: %w", err)
	}
	for {
		u, err := stream.Recv()
		if err != nil {
			return fmt.Errorf("watch: %w", err)
		}
		a.reconcile(u)
	}
}

// Close stops the agent: every rank it runs is stopped (SIGTERM, grace,
// SIGKILL), or with DetachOnClose left running, and its listeners close.
func (a *Agent) Close() error {
	a.cancel()
	a.mu.Lock()
	tasks := make([]*task, 0, len(a.tasks))
	for _, t := range a.tasks {
		tasks = append(tasks, t)
	}
	a.mu.Unlock()
	if !a.cfg.DetachOnClose {
		for _, t := range tasks {
			t.requestStop()
		}
	}
	for _, t := range tasks {
		<-t.finished
	}
	if a.http != nil {
		a.http.Close()
	}
	if a.gossip != nil {
		a.gossip.Leave(time.Second)
	}
	if a.grpc != nil {
		a.grpc.Stop()
	} else {
		a.lis.Close()
	}
	a.wg.Wait()
	a.state.Close()
	return a.conn.Close()
}

// nameGPUModels gives typ (loom agent --gpu-type) as the model of every GPU
// of top, which must all be simulated: a real GPU's model is what NVML
// says, and a type that disagrees with it is refused rather than ignored.
func nameGPUModels(top *api.Topology, typ string) error {
	if typ == "" {
		return nil
	}
	if strings.ContainsAny(typ, " \t,:&|[]()") {
		return fmt.Errorf("agent: --gpu-type=%s: want one word, as a100", typ)
	}
	for _, g := range top.GetGpus() {
		if !g.Simulated {
			return fmt.Errorf("agent: --gpu-type=%s: GPU %d is a real %s (type %s) that NVML found; --gpu-type names simulated GPUs (--profile, --gpus, --topology-file)", typ, g.Index, g.Model, api.GPUFeature(g.Model))
		}
	}
	for _, g := range top.GetGpus() {
		g.Model = typ
	}
	return nil
}
