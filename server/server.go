package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/loomhpc/loom/api"
	"github.com/loomhpc/loom/gossip"
	"github.com/loomhpc/loom/raftnode"
	"github.com/loomhpc/loom/scheduler"
	"github.com/loomhpc/loom/state"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
)

// Config is one server's settings.
type Config struct {
	Name        string // server (Raft) id; defaults to the hostname
	DataDir     string
	RPCAddr     string // gRPC API, default :7070
	RaftAddr    string // Raft transport, default 127.0.0.1:7071
	MetricsAddr string // /metrics, default :7080; "-" disables
	Bootstrap   bool   // start a single-server cluster on an empty data dir
	// BootstrapExpect > 1 forms a new cluster of that many servers, found
	// through Join, when the data dir is empty.
	BootstrapExpect int
	// Join lists other servers' gRPC addresses: to find the servers to
	// bootstrap with, or to join a running cluster.
	Join []string
	// HeartbeatTimeout and ElectionTimeout tune failover (default 500ms).
	HeartbeatTimeout, ElectionTimeout time.Duration
	// SnapshotThreshold and TrailingLogs tune Raft snapshots.
	SnapshotThreshold, TrailingLogs uint64
	// Gossip: with GossipAddr set the server joins the memberlist pool
	// (GossipJoin: other servers' gossip addresses) and, as leader, marks a
	// node DOWN once its agent has been gone for NodeDownGrace.
	GossipAddr    string
	GossipJoin    []string
	GossipKeys    [][]byte
	NodeDownGrace time.Duration
	Fast          bool   // short Raft timeouts (tests, dev cluster)
	RaftLogLevel  string // hashicorp/raft's own log level, default warn
	Scheduler     scheduler.Config
	// SchedulerInterval is the longest the leader waits between cycles
	// when nothing changes (time-based rules still need a look).
	SchedulerInterval time.Duration
	Logger            *slog.Logger
}

// Server is a running control-plane server.
type Server struct {
	cfg      Config
	log      *slog.Logger
	raft     *raftnode.Node
	grpc     *grpc.Server
	lis      net.Listener
	feasible feasibility
	// advertiseMetrics is this server's /metrics address as peers and
	// Prometheus reach it; empty when metrics are off.
	advertiseMetrics string
	http             *http.Server
	httpLis          net.Listener
	metrics          *metrics
	fwd              leaderConns
	// advertiseRPC is the gRPC address peers and clients dial.
	advertiseRPC string
	gossip       *gossip.Gossip
	gossipWake   chan struct{}
	submitQ      chan *pendingSubmit

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New starts a server: Raft, the gRPC API, metrics and the leader loop.
func New(cfg Config) (*Server, error) {
	if cfg.Name == "" {
		cfg.Name, _ = os.Hostname()
	}
	if cfg.RPCAddr == "" {
		cfg.RPCAddr = ":7070"
	}
	if cfg.RaftAddr == "" {
		cfg.RaftAddr = "127.0.0.1:7071"
	}
	if cfg.MetricsAddr == "" {
		cfg.MetricsAddr = ":7080"
	}
	if cfg.NodeDownGrace == 0 {
		cfg.NodeDownGrace = time.Second
	}
	if cfg.SchedulerInterval == 0 {
		cfg.SchedulerInterval = time.Second
	}
	if cfg.Scheduler.MaxPlacementsPerCycle == 0 {
		cfg.Scheduler.MaxPlacementsPerCycle = 2000
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	log = log.With("server", cfg.Name)
	rn, err := raftnode.Open(raftnode.Config{
		NodeID: cfg.Name, DataDir: cfg.DataDir, BindAddr: cfg.RaftAddr,
		Bootstrap: cfg.Bootstrap && cfg.BootstrapExpect <= 1, Fast: cfg.Fast, RaftLogLevel: cfg.RaftLogLevel, Logger: log,
		HeartbeatTimeout: cfg.HeartbeatTimeout, ElectionTimeout: cfg.ElectionTimeout,
		SnapshotThreshold: cfg.SnapshotThreshold, TrailingLogs: cfg.TrailingLogs,
	})
	if err != nil {
		return nil, err
	}
	lis, err := net.Listen("tcp", cfg.RPCAddr)
	if err != nil {
		rn.Close()
		return nil, fmt.Errorf("server: listen %s: %w", cfg.RPCAddr, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{cfg: cfg, log: log, raft: rn, lis: lis, ctx: ctx, cancel: cancel,
		advertiseRPC: advertisedRPC(lis.Addr(), rn.Addr())}
	s.grpc = grpc.NewServer()
	api.RegisterJobServiceServer(s.grpc, &jobService{s: s})
	api.RegisterNodeServiceServer(s.grpc, &nodeService{s: s})
	api.RegisterAgentServiceServer(s.grpc, &agentService{s: s})
	api.RegisterOperatorServer(s.grpc, &operatorService{s: s})
	s.metrics = newMetrics(s)
	if cfg.MetricsAddr != "-" {
		reg := prometheus.NewRegistry()
		reg.MustRegister(s.metrics, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		mux.HandleFunc("/v1/sd/agents", s.serveSDAgents)
		mux.HandleFunc("/v1/sd/servers", s.serveSDServers)
		s.httpLis, err = net.Listen("tcp", cfg.MetricsAddr)
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("server: metrics listen %s: %w", cfg.MetricsAddr, err)
		}
		s.advertiseMetrics = advertisedRPC(s.httpLis.Addr(), rn.Addr())
		s.http = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		s.goFunc(func() { _ = s.http.Serve(s.httpLis) })
	}
	s.goFunc(func() {
		if err := s.grpc.Serve(lis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			log.Error("grpc serve", "err", err)
		}
	})
	if cfg.GossipAddr != "" {
		if err := s.startGossip(); err != nil {
			s.Close()
			return nil, err
		}
	}
	s.startSubmitBatcher()
	s.goFunc(s.leaderLoop)
	s.goFunc(func() { s.formCluster(ctx) })
	s.goFunc(func() { s.publishSelf(ctx) })
	log.Info("server started", "rpc_addr", lis.Addr().String(), "raft_addr", rn.Addr(), "data_dir", cfg.DataDir)
	return s, nil
}

func (s *Server) goFunc(f func()) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		f()
	}()
}

// RPCAddr is the address the gRPC API listens on.
func (s *Server) RPCAddr() string { return s.lis.Addr().String() }

// MetricsAddr is the address /metrics is served on, empty when disabled.
func (s *Server) MetricsAddr() string {
	if s.httpLis == nil {
		return ""
	}
	return s.httpLis.Addr().String()
}

// State returns the state this server has applied.
func (s *Server) State() *state.View { return s.raft.Store().View() }

// IsLeader reports whether this server currently leads.
func (s *Server) IsLeader() bool { return s.raft.IsLeader() }

// Close stops the server and waits for its goroutines.
func (s *Server) Close() error {
	s.cancel()
	if s.http != nil {
		s.http.Close()
	}
	stopped := make(chan struct{})
	go func() { s.grpc.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(2 * time.Second):
		s.grpc.Stop()
	}
	if s.gossip != nil {
		s.gossip.Close()
	}
	s.wg.Wait()
	s.fwd.close()
	return s.raft.Close()
}

// apply commits a command on the leader.
func (s *Server) apply(ctx context.Context, c state.CommandType, msg proto.Message) (*state.Result, error) {
	if !s.raft.IsLeader() {
		return nil, fmt.Errorf("%w: %s", raftnode.ErrNotLeader, s.leaderHint())
	}
	start := time.Now()
	res, err := s.raft.Apply(ctx, c, msg)
	s.metrics.observeApply(c, time.Since(start), err)
	return res, err
}

func (s *Server) leaderHint() string {
	if addr, id := s.raft.Leader(); addr != "" {
		return fmt.Sprintf("leader is %s (%s)", id, addr)
	}
	return "no leader elected (no quorum?)"
}

func nowMs() int64 { return time.Now().UnixMilli() }
