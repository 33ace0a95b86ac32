package raft

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/go-hclog"
	hraft "github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"
)

// Config sets up one Raft server.
type Config struct {
	NodeID   string // stable server name
	DataDir  string // raft.db (log + stable store) and snapshots/
	BindAddr string // Raft transport, host:port; port 0 picks one
	// Bootstrap makes a new single-server cluster when the data dir holds
	// no state yet. (Multi-server joins come with the HA work.)
	Bootstrap bool
	// Fast shortens Raft's timeouts for tests and the dev cluster.
	Fast bool
	// RaftLogLevel is hashicorp/raft's own log level ("warn" by default;
	// the dev cluster uses "error" to hide start-up election chatter).
	RaftLogLevel string
	Logger       *slog.Logger
}

// Node is a running Raft server with Loom's FSM.
type Node struct {
	raft      *hraft.Raft
	store     *Store
	fsm       *FSM
	logs      *BoltStore
	transport *hraft.NetworkTransport
	log       *slog.Logger
}

// ErrNotLeader is returned for writes on a server that is not the leader.
var ErrNotLeader = errors.New("raft: not the leader")

// Open starts the Raft server described by cfg.
func Open(cfg Config) (*Node, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("raft: data dir: %w", err)
	}
	logs, err := OpenBoltStore(filepath.Join(cfg.DataDir, "raft.db"))
	if err != nil {
		return nil, err
	}
	hlog := hclog.New(&hclog.LoggerOptions{Name: "raft", Level: raftLogLevel(cfg.RaftLogLevel), Output: os.Stderr})
	snaps, err := hraft.NewFileSnapshotStoreWithLogger(cfg.DataDir, 2, hlog)
	if err != nil {
		logs.Close()
		return nil, fmt.Errorf("raft: snapshot store: %w", err)
	}
	addr, err := net.ResolveTCPAddr("tcp", cfg.BindAddr)
	if err != nil {
		logs.Close()
		return nil, fmt.Errorf("raft: bind address %q: %w", cfg.BindAddr, err)
	}
	var advertise net.Addr
	if addr.Port != 0 && !addr.IP.IsUnspecified() {
		advertise = addr
	}
	transport, err := hraft.NewTCPTransportWithLogger(cfg.BindAddr, advertise, 3, 10*time.Second, hlog)
	if err != nil {
		logs.Close()
		return nil, fmt.Errorf("raft: transport on %s: %w", cfg.BindAddr, err)
	}
	rc := hraft.DefaultConfig()
	rc.LocalID = hraft.ServerID(cfg.NodeID)
	rc.Logger = hlog
	if cfg.Fast {
		rc.HeartbeatTimeout = 100 * time.Millisecond
		rc.ElectionTimeout = 100 * time.Millisecond
		rc.LeaderLeaseTimeout = 50 * time.Millisecond
		rc.CommitTimeout = 5 * time.Millisecond
	}
	store := NewStore()
	fsm := NewFSM(store, log)
	r, err := hraft.NewRaft(rc, fsm, logs, logs, snaps, transport)
	if err != nil {
		transport.Close()
		logs.Close()
		return nil, fmt.Errorf("raft: start: %w", err)
	}
	n := &Node{raft: r, store: store, fsm: fsm, logs: logs, transport: transport, log: log}
	if cfg.Bootstrap {
		has, err := hraft.HasExistingState(logs, logs, snaps)
		if err != nil {
			n.Close()
			return nil, fmt.Errorf("raft: inspect state: %w", err)
		}
		if !has {
			f := r.BootstrapCluster(hraft.Configuration{Servers: []hraft.Server{
				{ID: rc.LocalID, Address: transport.LocalAddr()},
			}})
			if err := f.Error(); err != nil && !errors.Is(err, hraft.ErrCantBootstrap) {
				n.Close()
				return nil, fmt.Errorf("raft: bootstrap: %w", err)
			}
			log.Info("bootstrapped a new single-server cluster", "id", cfg.NodeID, "raft_addr", transport.LocalAddr())
		}
	}
	return n, nil
}

// Store returns the replicated state this server has applied.
func (n *Node) Store() *Store { return n.store }

// IsLeader reports whether this server leads.
func (n *Node) IsLeader() bool { return n.raft.State() == hraft.Leader }

// LeaderCh signals leadership gained (true) and lost (false).
func (n *Node) LeaderCh() <-chan bool { return n.raft.LeaderCh() }

// Leader returns the leader's Raft address and id, empty when unknown.
func (n *Node) Leader() (addr, id string) {
	a, i := n.raft.LeaderWithID()
	return string(a), string(i)
}

// Addr is this server's Raft transport address.
func (n *Node) Addr() string { return string(n.transport.LocalAddr()) }

// Stats returns Raft's own counters (term, last index, ...).
func (n *Node) Stats() map[string]string { return n.raft.Stats() }

// Apply commits one command and returns the FSM's result. It returns
// ErrNotLeader on a follower; the caller forwards.
func (n *Node) Apply(ctx context.Context, c CommandType, msg proto.Message) (*Result, error) {
	data, err := Encode(c, msg)
	if err != nil {
		return nil, err
	}
	timeout := 10 * time.Second
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl)
	}
	f := n.raft.Apply(data, timeout)
	if err := f.Error(); err != nil {
		if errors.Is(err, hraft.ErrNotLeader) || errors.Is(err, hraft.ErrLeadershipLost) {
			return nil, fmt.Errorf("%w: %v", ErrNotLeader, err)
		}
		return nil, fmt.Errorf("raft: apply %s: %w", c, err)
	}
	res, _ := f.Response().(*Result)
	if res == nil {
		return nil, fmt.Errorf("raft: apply %s: no result", c)
	}
	return res, nil
}

// Barrier waits until every entry committed before it is applied here.
func (n *Node) Barrier(ctx context.Context) error {
	timeout := 10 * time.Second
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl)
	}
	return n.raft.Barrier(timeout).Error()
}

// Close shuts Raft down and closes its files.
func (n *Node) Close() error {
	err := n.raft.Shutdown().Error()
	n.transport.Close()
	if cerr := n.logs.Close(); err == nil {
		err = cerr
	}
	return err
}

var _ io.Closer = (*Node)(nil)

func raftLogLevel(s string) hclog.Level {
	if s == "" {
		return hclog.Warn
	}
	return hclog.LevelFromString(s)
}
