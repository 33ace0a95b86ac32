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
	"github.com/loomhpc/loom/api/apirpc"
	"github.com/loomhpc/loom/auth"
	"github.com/loomhpc/loom/clusterconf"
	"github.com/loomhpc/loom/gossip"
	"github.com/loomhpc/loom/pki"
	"github.com/loomhpc/loom/raftnode"
	"github.com/loomhpc/loom/scheduler"
	"github.com/loomhpc/loom/state"
	"github.com/loomhpc/loom/state/acct"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
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
	// SnapshotThreshold, TrailingLogs and SnapshotInterval tune Raft
	// snapshots.
	SnapshotThreshold, TrailingLogs uint64
	SnapshotInterval                time.Duration
	// Gossip: with GossipAddr set the server joins the memberlist pool
	// (GossipJoin: other servers' gossip addresses) and, as leader, marks a
	// node DOWN once its agent has been gone for NodeDownGrace.
	GossipAddr    string
	GossipJoin    []string
	GossipKeys    [][]byte
	NodeDownGrace time.Duration
	Fast          bool   // short Raft timeouts (tests, dev cluster)
	RaftLogLevel  string // hashicorp/raft's own log level, default warn
	// Scheduler is the scheduling configuration in force until a cluster
	// configuration is replicated (ClusterConfigPath).
	Scheduler scheduler.Config
	// ClusterConfigPath is the loom.toml whose [scheduler], [[qos]],
	// [[partition]] and [topology] tables this server, as leader,
	// replicates when it takes office and on a reload (package
	// clusterconf); "" for none. ClusterConfigOverrides are the
	// --scheduler-* flags given on the command line, which win over it.
	ClusterConfigPath      string
	ClusterConfigOverrides []clusterconf.Override
	// SchedulerInterval is the longest the leader waits between cycles
	// when nothing changes (time-based rules still need a look).
	SchedulerInterval time.Duration
	Logger            *slog.Logger
	// MailProg is Slurm's MailProg: the program the leader runs, as
	// "MailProg -s SUBJECT ADDRESS" with SLURM_JOB_* in its environment,
	// for each event a job's --mail-type asks for; "" sends no mail.
	MailProg string

	// Auth is how users prove who they are: auth.ModeMunge (the default)
	// or auth.ModeLocal (peer credentials on LocalSocket only).
	Auth auth.Mode
	// Munge decodes MUNGE credentials; nil means the munged on its
	// default socket.
	Munge auth.Decoder
	// LocalSocket, when set, is a Unix socket beside the TCP listener
	// where local users are identified by their peer credentials; root
	// there is an operator. Required with auth.ModeLocal.
	LocalSocket string
	// TLS names the CA and this server's certificate: the gRPC API, the
	// Raft transport and calls to peers and agents then use mutual TLS.
	// Nil runs all of them in plaintext (tls = false), trusting every host
	// that can reach the ports; New logs a warning.
	TLS *pki.Files
	// Policy names the operators.
	Policy auth.Policy
	// PublicData shows every user the script, environment and output
	// paths of other users' jobs. Off by default (Slurm's
	// PrivateData=jobs): only owners and operators see them. Logs and the
	// job secret are never shown to others.
	PublicData bool
	// QOSAccess restricts a QoS to the users and groups its Policy names
	// as operators (and the cluster's operators); a QoS not listed is open
	// to everyone.
	QOSAccess map[string]auth.Policy
	// Limits bound the jobs the cluster holds; nil means DefaultLimits.
	Limits *Limits
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
	submits      *groupCommitter[*api.SubmitRequest]     // the leader's group commit of submits
	reports      *groupCommitter[*api.TaskUpdateRequest] // and of agents' task reports
	auth         *auth.Authenticator
	localLis     net.Listener
	limits       Limits
	acct         *acct.Store  // jobs that have left the live state; nil without a data dir
	summaries    summaryCache // encoded listings of jobs (listcache.go)
	// reloadMu makes reloads of the cluster configuration one at a time.
	reloadMu sync.Mutex

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
	if cfg.Auth == "" {
		cfg.Auth = auth.ModeMunge
	}
	if cfg.Auth == auth.ModeLocal && cfg.LocalSocket == "" {
		return nil, fmt.Errorf("server: auth %q needs a local socket (local_socket)", cfg.Auth)
	}
	creds, err := serverCreds(cfg)
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: log, limits: DefaultLimits()}
	if cfg.Limits != nil {
		s.limits = *cfg.Limits
	}
	if s.auth, err = s.newAuthenticator(); err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	if err := cfg.Policy.Validate(); err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	if cfg.TLS == nil {
		log.Warn("TLS is off (tls = false): servers, agents and users talk in plaintext, daemon calls are not authenticated, and any host that reaches the ports can act as a server or agent")
	}
	if s.acct, err = openAcct(cfg.DataDir); err != nil {
		return nil, err
	}
	var archive state.Archive
	if s.acct != nil {
		archive = s.acct
	}
	rn, err := raftnode.Open(raftnode.Config{
		NodeID: cfg.Name, DataDir: cfg.DataDir, BindAddr: cfg.RaftAddr,
		Bootstrap: cfg.Bootstrap && cfg.BootstrapExpect <= 1, Fast: cfg.Fast, RaftLogLevel: cfg.RaftLogLevel, Logger: log,
		HeartbeatTimeout: cfg.HeartbeatTimeout, ElectionTimeout: cfg.ElectionTimeout,
		SnapshotThreshold: cfg.SnapshotThreshold, TrailingLogs: cfg.TrailingLogs, SnapshotInterval: cfg.SnapshotInterval, TLS: cfg.TLS,
		Archive: archive,
	})
	if err != nil {
		s.closeAcct()
		return nil, err
	}
	lis, err := net.Listen("tcp", cfg.RPCAddr)
	if err != nil {
		rn.Close()
		s.closeAcct()
		return nil, fmt.Errorf("server: listen %s: %w", cfg.RPCAddr, err)
	}
	var local net.Listener
	if cfg.LocalSocket != "" {
		if local, err = auth.ListenLocal(cfg.LocalSocket); err != nil {
			lis.Close()
			rn.Close()
			s.closeAcct()
			return nil, fmt.Errorf("server: local socket: %w", err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.raft, s.lis, s.localLis, s.ctx, s.cancel = rn, lis, local, ctx, cancel
	s.advertiseRPC = advertisedRPC(lis.Addr(), rn.Addr())
	s.grpc = grpc.NewServer(append(apirpc.ServerSizeOptions(), grpc.Creds(creds),
		grpc.ChainUnaryInterceptor(s.unaryAdmit), grpc.ChainStreamInterceptor(s.streamAdmit))...)
	s.registerServices(s.grpc)
	s.metrics = newMetrics(s)
	// The fair-share gauge reads archived usage as the scheduler does.
	s.metrics.shares.archive = s.acct
	if cfg.MetricsAddr != "-" {
		s.metrics.events.caughtUp = caughtUpWith(rn)
		s.goFunc(func() { s.metrics.events.follow(rn.Store(), time.Second, ctx.Done()) })
	}
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
	if local != nil {
		s.goFunc(func() {
			if err := s.grpc.Serve(local); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
				log.Error("grpc serve", "socket", cfg.LocalSocket, "err", err)
			}
		})
	}
	if cfg.GossipAddr != "" {
		if err := s.startGossip(); err != nil {
			s.Close()
			return nil, err
		}
	}
	s.startBatchers()
	s.goFunc(s.leaderLoop)
	s.goFunc(func() { s.formCluster(ctx) })
	s.goFunc(func() { s.publishSelf(ctx) })
	log.Info("server started", "rpc_addr", lis.Addr().String(), "raft_addr", rn.Addr(), "data_dir", cfg.DataDir,
		"auth", cfg.Auth, "local_socket", cfg.LocalSocket, "tls", cfg.TLS != nil)
	return s, nil
}

// serverCreds are the transport credentials of the gRPC API: peer
// credentials on the local socket, and on TCP TLS that takes a client
// certificate if one is given (daemons give one, users do not), or
// plaintext without TLS.
func serverCreds(cfg Config) (credentials.TransportCredentials, error) {
	if cfg.TLS == nil {
		return auth.LocalOr(insecure.NewCredentials()), nil
	}
	me, err := cfg.TLS.Identity()
	if err != nil {
		return nil, fmt.Errorf("server: tls: %w", err)
	}
	if me.Role != pki.RoleServer {
		return nil, fmt.Errorf("server: tls_cert %s is the certificate of %s, not of a server", cfg.TLS.Cert, me)
	}
	tc, err := pki.ServerConfig(*cfg.TLS, pki.ServerOptions{ClientAuth: pki.ClientCertIfGiven})
	if err != nil {
		return nil, fmt.Errorf("server: tls: %w", err)
	}
	return auth.LocalOr(credentials.NewTLS(tc)), nil
}

// dialCreds are the transport credentials with which this server dials
// another server.
func (s *Server) dialCreds() (credentials.TransportCredentials, error) {
	if s.cfg.TLS == nil {
		return insecure.NewCredentials(), nil
	}
	tc, err := pki.DaemonClientConfig(*s.cfg.TLS)
	if err != nil {
		return nil, err
	}
	return credentials.NewTLS(tc), nil
}

// agentCreds are the transport credentials with which this server dials
// the agent of node.
func (s *Server) agentCreds(node string) (credentials.TransportCredentials, error) {
	if s.cfg.TLS == nil {
		return insecure.NewCredentials(), nil
	}
	tc, err := pki.AgentClientConfig(*s.cfg.TLS, node)
	if err != nil {
		return nil, err
	}
	return credentials.NewTLS(tc), nil
}

// LocalSocket is the path of the server's Unix socket, empty when it has
// none.
func (s *Server) LocalSocket() string { return s.cfg.LocalSocket }

// registerServices puts the gRPC services on g; methodAccess must have a
// rule for each of their methods.
func (s *Server) registerServices(g *grpc.Server) {
	apirpc.RegisterJobServiceServer(g, &jobService{s: s})
	apirpc.RegisterNodeServiceServer(g, &nodeService{s: s})
	apirpc.RegisterAgentServiceServer(g, &agentService{s: s})
	apirpc.RegisterOperatorServer(g, &operatorService{s: s})
	apirpc.RegisterReservationServiceServer(g, &reservationService{s: s})
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
	err := s.raft.Close()
	s.closeAcct()
	return err
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
