// Package devcluster runs a whole Loom cluster in one process: one server
// (a real single-node Raft on a temporary data dir) and N agents with
// simulated GPUs running ranks as plain processes. It is what `loom dev`
// and `make run` start, and what end-to-end tests build on.
//
// It is secured as a real cluster is, with throwaway credentials: a CA
// made in its data dir signs the server's and each agent's certificate,
// and they talk mutual TLS. Users reach it only through the server's
// local socket (auth = local), where the kernel names the caller, so
// another user of the machine cannot act as the one who started it.
package devcluster

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"time"

	"github.com/loomhpc/loom/agent"
	"github.com/loomhpc/loom/agent/driver/exec"
	"github.com/loomhpc/loom/api"
	"github.com/loomhpc/loom/auth"
	"github.com/loomhpc/loom/gpu/probe"
	"github.com/loomhpc/loom/internal/harness"
	"github.com/loomhpc/loom/pki"
	"github.com/loomhpc/loom/server"
)

// Options shapes the dev cluster.
type Options struct {
	Agents  int    // number of simulated nodes, default 2
	Profile string // GPU profile of every node, default dgx-h100
	GPUs    int    // with Profile "flat": GPUs per node
	// Gres are every node's generic resources besides GPUs, as loom
	// agent --gres.
	Gres    map[string]uint64
	GPUType string // the simulated GPUs' type, replacing the profile's model (agent --gpu-type)
	DataDir string // default: a new temporary directory, removed on Close
	RPCAddr string // server gRPC address, default 127.0.0.1:7070
	Metrics bool   // serve /metrics for the server and agents
	// ServerMetricsAddr is the server's /metrics address when Metrics is
	// set, default 127.0.0.1:7080 (agents always take a free port).
	ServerMetricsAddr string
	NodeName          string // node name prefix, default "node"
	// Socket is the server's local socket, where users connect; default
	// a new socket in a temporary directory, removed on Close.
	Socket string
	Logger *slog.Logger
	// CommandsBinary is the loom binary whose srun and scontrol batch
	// scripts call (agent.Config.CommandsBinary); default the running
	// executable, which is right for loom dev and wrong for a test binary.
	CommandsBinary string
	// Limits are the server's job limits; nil means server.DefaultLimits.
	Limits *server.Limits
	// Cluster is the cluster configuration (partitions, QoS, switches)
	// the server is given once it leads; nil leaves the defaults.
	Cluster *api.ClusterConfig
	// Nodes, when given, are the simulated nodes instead of Agents nodes
	// of Profile (loom dev --config's [[dev.nodes]]).
	Nodes []NodeGroup
}

// agentGroups returns the node groups o asks for: its Nodes, or Agents
// nodes of Profile (GPUs of them with a flat profile) named NodeName1….
func (o Options) agentGroups() []NodeGroup {
	if len(o.Nodes) > 0 {
		return o.Nodes
	}
	g := NodeGroup{Count: o.Agents, Name: o.NodeName, Profile: o.Profile}
	if o.Profile == "" {
		g.Profile = fmt.Sprintf("flat-%d", o.GPUs)
	}
	return []NodeGroup{g}
}

// Cluster is a running dev cluster.
type Cluster struct {
	Server *server.Server
	Agents []*agent.Agent

	dataDir   string
	ownDir    bool
	socket    string
	socketDir string // a temporary directory of the socket, removed on Close
	cancel    context.CancelFunc
	done      chan struct{}
}

// Start brings the cluster up and returns once every agent has registered.
func Start(ctx context.Context, o Options) (*Cluster, error) {
	if o.Agents <= 0 {
		o.Agents = 2
	}
	if o.Profile == "" {
		o.Profile = "dgx-h100"
	}
	if o.Profile == "flat" {
		o.Profile = ""
		if o.GPUs <= 0 {
			o.GPUs = 8
		}
	}
	if o.RPCAddr == "" {
		o.RPCAddr = "127.0.0.1:7070"
	}
	if o.NodeName == "" {
		o.NodeName = "node"
	}
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	c := &Cluster{dataDir: o.DataDir, done: make(chan struct{})}
	if c.dataDir == "" {
		dir, err := os.MkdirTemp("", "loom-dev-")
		if err != nil {
			return nil, err
		}
		c.dataDir, c.ownDir = dir, true
	}
	if o.ServerMetricsAddr == "" {
		o.ServerMetricsAddr = "127.0.0.1:7080"
	}
	metrics := func(addr string) string {
		if o.Metrics {
			return addr
		}
		return "-"
	}
	c.socket = o.Socket
	if c.socket == "" {
		dir, err := os.MkdirTemp("", "loom-dev-sock-")
		if err != nil {
			c.removeDir()
			return nil, err
		}
		c.socketDir, c.socket = dir, filepath.Join(dir, "loom.sock")
	}
	ca, err := pki.CreateCA(filepath.Join(c.dataDir, "tls"), pki.CAOptions{Force: true})
	if err != nil {
		c.removeDir()
		return nil, fmt.Errorf("devcluster: %w", err)
	}
	cert := func(role pki.Role, node string) (*pki.Files, error) {
		f, err := pki.CreateCert(ca, role, node, pki.CertOptions{Dir: filepath.Join(c.dataDir, "tls"), Force: true})
		if err != nil {
			return nil, fmt.Errorf("devcluster: %w", err)
		}
		return &f, nil
	}
	serverTLS, err := cert(pki.RoleServer, "dev-server")
	if err != nil {
		c.removeDir()
		return nil, err
	}
	srv, err := server.New(server.Config{
		Name: "dev-server", DataDir: filepath.Join(c.dataDir, "server"),
		RPCAddr: o.RPCAddr, RaftAddr: "127.0.0.1:0", MetricsAddr: metrics(o.ServerMetricsAddr),
		Bootstrap: true, Fast: true, RaftLogLevel: "error", Logger: log,
		Auth: auth.ModeLocal, LocalSocket: c.socket, TLS: serverTLS,
		// The user who started the sandbox runs it: drain, resume and
		// every job are theirs to change.
		Policy: auth.Policy{OperatorUsers: currentUser()},
		Limits: o.Limits,
	})
	if err != nil {
		c.removeDir()
		return nil, err
	}
	c.Server = srv
	if err := waitUntil(ctx, "the server to elect itself", srv.IsLeader); err != nil {
		c.Close()
		return nil, err
	}
	if o.Cluster != nil {
		if err := srv.SetClusterConfig(ctx, o.Cluster); err != nil {
			c.Close()
			return nil, fmt.Errorf("devcluster: %w", err)
		}
	}
	runCtx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	total := 0
	for _, g := range o.agentGroups() {
		for _, name := range g.names() {
			total++
			if err := c.startAgent(runCtx, o, g, name, total, cert, metrics("127.0.0.1:0"), log); err != nil {
				c.Close()
				return nil, err
			}
		}
	}
	go func() {
		<-runCtx.Done()
		close(c.done)
	}()
	registered := func() bool {
		count := 0
		for range c.Server.State().Nodes() {
			count++
		}
		return count >= total
	}
	if err := waitUntil(ctx, "every agent to register", registered); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// startAgent starts the i-th agent (from 1), node name of group g.
func (c *Cluster) startAgent(ctx context.Context, o Options, g NodeGroup, name string, i int,
	cert func(pki.Role, string) (*pki.Files, error), metricsAddr string, log *slog.Logger) error {
	agentTLS, err := cert(pki.RoleAgent, name)
	if err != nil {
		return err
	}
	cfg := agent.Config{
		TLS:  agentTLS,
		Name: name, Servers: []string{c.Server.RPCAddr()}, DataDir: filepath.Join(c.dataDir, name),
		ListenAddr: "127.0.0.1:0", MetricsAddr: metricsAddr,
		Profile: g.Profile, Features: slices.Clone(g.Features), Partitions: slices.Clone(g.Partitions),
		Gres: maps.Clone(o.Gres), GPUType: o.GPUType,
		// Simulated nodes share one host, so each gets its own ports.
		PortMin: uint32(29500 + 100*i), PortMax: uint32(29500 + 100*i + 99),
		// The dev cluster is one user's sandbox: it runs jobs as
		// whoever started it, root included.
		AllowRoot: true, KillGrace: 3 * time.Second,
		Driver: exec.New(filepath.Join(c.dataDir, name, "exec"), log), Logger: log,
		CommandsBinary: o.CommandsBinary,
		// Jobs' srun reaches the server where the user who started
		// the cluster does: its local socket.
		ClientAddr: "unix://" + c.socket,
	}
	if g.Profile == "none" {
		cfg.Profile = ""
	}
	if err := applyAgentArgs(&cfg, g.AgentArgs); err != nil {
		return fmt.Errorf("devcluster: node %s: agent_args: %w", name, err)
	}
	if g.CPUs != 0 || g.MemoryMB != 0 {
		// Keep the rest of the profile's CPUs and memory for the system,
		// as --reserved-cpus and --reserved-mem-mb would.
		found, err := probe.Discover(ctx, probe.Options{Host: name, Profile: cfg.Profile, GPUs: cfg.GPUs})
		if err != nil {
			return fmt.Errorf("devcluster: node %s: %w", name, err)
		}
		if g.CPUs > found.CPUs || g.MemoryMB > found.MemoryMB {
			return fmt.Errorf("devcluster: node %s: cpus = %d, memory_mb = %d: profile %q has only %d CPUs and %d MB",
				name, g.CPUs, g.MemoryMB, g.Profile, found.CPUs, found.MemoryMB)
		}
		if g.CPUs != 0 {
			cfg.ReservedCPUs += int(found.CPUs - g.CPUs)
		}
		if g.MemoryMB != 0 {
			cfg.ReservedMemMB += found.MemoryMB - g.MemoryMB
		}
	}
	a, err := agent.New(cfg)
	if err != nil {
		return err
	}
	c.Agents = append(c.Agents, a)
	go func() { _ = a.Run(ctx) }()
	return nil
}

// currentUser names the user running the dev cluster, for its operators.
func currentUser() []string {
	u, err := user.Current()
	if err != nil {
		return nil
	}
	return []string{u.Username}
}

// waitUntil polls cond during start-up, which takes well under a second.
func waitUntil(ctx context.Context, what string, cond func() bool) error {
	if err := harness.Wait(ctx, what, 30*time.Second, cond); err != nil {
		return fmt.Errorf("devcluster: %w", err)
	}
	return nil
}

// Addr is where users reach the server (what LOOM_ADDR should say): its
// local socket, unix:///PATH.
func (c *Cluster) Addr() string { return "unix://" + c.socket }

// DataDir is where the cluster keeps its state.
func (c *Cluster) DataDir() string { return c.dataDir }

// Close stops the agents (and their ranks), then the server, and removes
// a temporary data dir.
func (c *Cluster) Close() error {
	if c.cancel != nil {
		c.cancel()
	}
	for _, a := range c.Agents {
		a.Close()
	}
	var err error
	if c.Server != nil {
		err = c.Server.Close()
	}
	c.removeDir()
	return err
}

func (c *Cluster) removeDir() {
	if c.ownDir {
		os.RemoveAll(c.dataDir)
	}
	if c.socketDir != "" {
		os.RemoveAll(c.socketDir)
	}
}
