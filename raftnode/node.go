package raftnode

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"github.com/loomhpc/loom/pki"
	"github.com/loomhpc/loom/raftlog"
	"github.com/loomhpc/loom/state"
	"google.golang.org/protobuf/proto"
)

// Config sets up one Raft server.
type Config struct {
	NodeID   string // stable server name
	DataDir  string // wal/ (the log), raft.db (term and vote) and snapshots/
	BindAddr string // Raft transport, host:port; port 0 picks one
	// Bootstrap makes a new single-server cluster when the data dir holds
	// no state yet. Servers of a multi-server cluster leave it off and are
	// bootstrapped together (BootstrapServers) or joined (AddVoter).
	Bootstrap bool
	// Fast shortens Raft's timeouts for tests and the dev cluster.
	Fast bool
	// HeartbeatTimeout and ElectionTimeout bound how fast a dead leader is
	// replaced (default 500ms each; Fast uses 100ms).
	HeartbeatTimeout, ElectionTimeout time.Duration
	// SnapshotThreshold is how many entries trigger a snapshot, and
	// TrailingLogs how many entries a snapshot leaves in the log for slow
	// followers (hashicorp/raft's defaults when zero: 8192 and 10240).
	SnapshotThreshold, TrailingLogs uint64
	// SnapshotInterval is how often Raft checks SnapshotThreshold
	// (hashicorp/raft's 120s when zero); fault tests shorten it.
	SnapshotInterval time.Duration
	// RaftLogLevel is hashicorp/raft's own log level ("warn" by default;
	// the dev cluster uses "error" to hide start-up election chatter).
	RaftLogLevel string
	// TLS, when set, runs the Raft transport over mutual TLS: both ends
	// must hold a server certificate of the cluster's CA (pki.NewRaftLayer).
	// Nil means plaintext TCP, which the server allows only when its
	// configuration says tls = false.
	TLS    *pki.Files
	Logger *slog.Logger
	// Archive receives the jobs the FSM moves out of the live state (the
	// accounting store); nil drops them.
	Archive state.Archive
}

// Node is a running Raft server with Loom's FSM.
type Node struct {
	raft      *raft.Raft
	store     *state.Store
	stable    *raftlog.StableStore // term and vote
	logs      *raftlog.WAL
	transport *raft.NetworkTransport
	log       *slog.Logger
	id        string
	hasState  atomic.Bool

	leaders     *leaderWatch
	relayDone   chan struct{} // closed by Close to stop the relay
	relayExited chan struct{}
	stopRelay   sync.Once
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
	stable, err := raftlog.OpenStableStore(filepath.Join(cfg.DataDir, "raft.db"))
	if err != nil {
		return nil, err
	}
	wal, err := raftlog.OpenWAL(filepath.Join(cfg.DataDir, "wal"), log)
	if err != nil {
		stable.Close()
		return nil, err
	}
	logs := &fileStores{stable, wal}
	hlog := hclog.New(&hclog.LoggerOptions{Name: "raft", Level: raftLogLevel(cfg.RaftLogLevel), Output: os.Stderr})
	snaps, err := raft.NewFileSnapshotStoreWithLogger(cfg.DataDir, 2, hlog)
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
	transport, err := openTransport(cfg, advertise, hlog, log)
	if err != nil {
		logs.Close()
		return nil, fmt.Errorf("raft: transport on %s: %w", cfg.BindAddr, err)
	}
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.NodeID)
	// Buffer the apply channel so that everything submitted while the
	// previous batch was being fsynced goes to disk in the next one.
	rc.BatchApplyCh = true
	rc.Logger = hlog
	// Every leadership transition, in order (see leaderWatch); relayed
	// from the moment the node exists, Raft waits on it until then.
	notify := make(chan bool, 1)
	rc.NotifyCh = notify
	// Half of hashicorp/raft's defaults: on a LAN a leader is missed after
	// 0.5-1 s instead of 1-2 s, which keeps failover under 3 s.
	rc.HeartbeatTimeout, rc.ElectionTimeout, rc.LeaderLeaseTimeout = 500*time.Millisecond, 500*time.Millisecond, 250*time.Millisecond
	if cfg.Fast {
		rc.HeartbeatTimeout, rc.ElectionTimeout, rc.LeaderLeaseTimeout = 100*time.Millisecond, 100*time.Millisecond, 50*time.Millisecond
		rc.CommitTimeout = 5 * time.Millisecond
	}
	if cfg.HeartbeatTimeout > 0 {
		rc.HeartbeatTimeout = cfg.HeartbeatTimeout
		rc.LeaderLeaseTimeout = min(rc.LeaderLeaseTimeout, cfg.HeartbeatTimeout)
	}
	if cfg.ElectionTimeout > 0 {
		rc.ElectionTimeout = cfg.ElectionTimeout
	}
	if cfg.SnapshotThreshold > 0 {
		rc.SnapshotThreshold = cfg.SnapshotThreshold
	}
	if cfg.TrailingLogs > 0 {
		rc.TrailingLogs = cfg.TrailingLogs
	}
	if cfg.SnapshotInterval > 0 {
		rc.SnapshotInterval = cfg.SnapshotInterval
	}
	store := state.NewStore()
	machine := &fsm{fsm: state.NewFSM(store, log), store: store}
	if cfg.Archive != nil {
		machine.fsm.SetArchive(cfg.Archive)
	}
	// Replication and the FSM read back what was just appended: serve
	// the newest entries from memory.
	cache, err := raft.NewLogCache(logCacheEntries, wal)
	if err != nil {
		transport.Close()
		logs.Close()
		return nil, err
	}
	r, err := raft.NewRaft(rc, machine, cache, stable, snaps, transport)
	if err != nil {
		transport.Close()
		logs.Close()
		return nil, fmt.Errorf("raft: start: %w", err)
	}
	has, err := raft.HasExistingState(wal, stable, snaps)
	if err != nil {
		r.Shutdown()
		transport.Close()
		logs.Close()
		return nil, fmt.Errorf("raft: inspect state: %w", err)
	}
	n := &Node{raft: r, store: store, stable: stable, logs: wal, transport: transport, log: log, id: cfg.NodeID,
		leaders: newLeaderWatch(), relayDone: make(chan struct{}), relayExited: make(chan struct{})}
	go func() {
		defer close(n.relayExited)
		n.leaders.relay(notify, n.relayDone)
	}()
	n.hasState.Store(has)
	if cfg.Bootstrap {
		if !has {
			f := r.BootstrapCluster(raft.Configuration{Servers: []raft.Server{
				{ID: rc.LocalID, Address: transport.LocalAddr()},
			}})
			if err := f.Error(); err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
				n.Close()
				return nil, fmt.Errorf("raft: bootstrap: %w", err)
			}
			n.hasState.Store(true)
			log.Info("bootstrapped a new single-server cluster", "id", cfg.NodeID, "raft_addr", transport.LocalAddr())
		}
	}
	return n, nil
}

// Store returns the replicated state this server has applied.
func (n *Node) Store() *state.Store { return n.store }

// IsLeader reports whether this server leads.
func (n *Node) IsLeader() bool { return n.raft.State() == raft.Leader }

// Leadership returns whether this server leads, with the count of
// leadership transitions so far, and a channel closed at the next
// transition. Unlike Raft's LeaderCh it drops none: a loss and regain
// between two reads shows as a higher Changes.
func (n *Node) Leadership() (Leadership, <-chan struct{}) { return n.leaders.get() }

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
func (n *Node) Apply(ctx context.Context, c state.CommandType, msg proto.Message) (*state.Result, error) {
	data, err := state.Encode(c, msg)
	if err != nil {
		return nil, err
	}
	f := n.raft.Apply(data, timeoutOf(ctx))
	if err := f.Error(); err != nil {
		if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) ||
			errors.Is(err, raft.ErrEnqueueTimeout) || errors.Is(err, raft.ErrRaftShutdown) {
			// Unknown outcome for ErrLeadershipLost and timeouts: the entry may
			// still commit. Callers retry with the same idempotency token.
			return nil, fmt.Errorf("%w: %v", ErrNotLeader, err)
		}
		return nil, fmt.Errorf("raft: apply %s: %w", c, err)
	}
	res, _ := f.Response().(*state.Result)
	if res == nil {
		return nil, fmt.Errorf("raft: apply %s: no result", c)
	}
	return res, nil
}

// Barrier waits until every entry committed before it is applied here.
// A leader that loses its leadership meanwhile returns ErrNotLeader, as
// Apply does: the caller's read goes to the new leader.
func (n *Node) Barrier(ctx context.Context) error {
	err := n.raft.Barrier(timeoutOf(ctx)).Error()
	if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) ||
		errors.Is(err, raft.ErrEnqueueTimeout) || errors.Is(err, raft.ErrRaftShutdown) {
		return fmt.Errorf("%w: %v", ErrNotLeader, err)
	}
	return err
}

// Snapshot takes a snapshot now and compacts the log behind it (Raft also
// does so on its own every SnapshotThreshold entries).
func (n *Node) Snapshot() error { return n.raft.Snapshot().Error() }

// ID is this server's Raft id.
func (n *Node) ID() string { return n.id }

// HasState reports whether this server belongs to a cluster already: it
// has Raft state on disk, or has been bootstrapped or joined since start.
func (n *Node) HasState() bool {
	if n.hasState.Load() {
		return true
	}
	if n.raft.LastIndex() > 0 {
		n.hasState.Store(true)
		return true
	}
	return false
}

// Peer is one member of the Raft configuration.
type Peer struct {
	ID, Addr string
	Voter    bool
}

// BootstrapServers starts a new cluster whose first configuration is peers.
// Every server of a --bootstrap-expect group calls it with the same list.
func (n *Node) BootstrapServers(peers []Peer) error {
	var cfg raft.Configuration
	for _, p := range peers {
		cfg.Servers = append(cfg.Servers, raft.Server{ID: raft.ServerID(p.ID), Address: raft.ServerAddress(p.Addr), Suffrage: raft.Voter})
	}
	err := n.raft.BootstrapCluster(cfg).Error()
	if err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
		return fmt.Errorf("raft: bootstrap: %w", err)
	}
	n.hasState.Store(true)
	return nil
}

// Peers returns the current Raft configuration.
func (n *Node) Peers() ([]Peer, error) {
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, fmt.Errorf("raft: configuration: %w", err)
	}
	var out []Peer
	for _, s := range f.Configuration().Servers {
		out = append(out, Peer{ID: string(s.ID), Addr: string(s.Address), Voter: s.Suffrage == raft.Voter})
	}
	return out, nil
}

// AddVoter adds a server to the cluster (leader only). Adding a server
// already present with the same address changes nothing.
func (n *Node) AddVoter(ctx context.Context, id, addr string) error {
	err := n.raft.AddVoter(raft.ServerID(id), raft.ServerAddress(addr), 0, timeoutOf(ctx)).Error()
	if errors.Is(err, raft.ErrNotLeader) {
		return ErrNotLeader
	}
	return err
}

// RemoveServer removes a server from the cluster (leader only).
func (n *Node) RemoveServer(ctx context.Context, id string) error {
	err := n.raft.RemoveServer(raft.ServerID(id), 0, timeoutOf(ctx)).Error()
	if errors.Is(err, raft.ErrNotLeader) {
		return ErrNotLeader
	}
	return err
}

// VerifyLeader confirms with a quorum that this server still leads, so a
// read served after it is linearizable.
func (n *Node) VerifyLeader(ctx context.Context) error {
	if err := n.raft.VerifyLeader().Error(); err != nil {
		return fmt.Errorf("%w: %v", ErrNotLeader, err)
	}
	return n.Barrier(ctx)
}

func timeoutOf(ctx context.Context) time.Duration {
	if dl, ok := ctx.Deadline(); ok {
		return time.Until(dl)
	}
	return 10 * time.Second
}

// Close shuts Raft down and closes its files.
func (n *Node) Close() error {
	err := n.raft.Shutdown().Error()
	n.stopRelay.Do(func() { close(n.relayDone) })
	<-n.relayExited
	n.transport.Close()
	if cerr := n.logs.Close(); err == nil {
		err = cerr
	}
	if cerr := n.stable.Close(); err == nil {
		err = cerr
	}
	return err
}

// logCacheEntries is how many of the newest log entries are kept in
// memory for replication and the FSM.
const logCacheEntries = 1024

// fileStores closes both of a node's stores while it is being opened.
type fileStores struct {
	stable *raftlog.StableStore
	wal    *raftlog.WAL
}

func (f *fileStores) Close() error {
	err := f.wal.Close()
	if cerr := f.stable.Close(); err == nil {
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

// openTransport listens for Raft peers on cfg.BindAddr: over mutual TLS
// with server certificates when cfg.TLS is set, else over plain TCP.
func openTransport(cfg Config, advertise net.Addr, hlog hclog.Logger, log *slog.Logger) (*raft.NetworkTransport, error) {
	if cfg.TLS == nil {
		return raft.NewTCPTransportWithLogger(cfg.BindAddr, advertise, 3, 10*time.Second, hlog)
	}
	ln, err := net.Listen("tcp", cfg.BindAddr)
	if err != nil {
		return nil, err
	}
	layer, err := pki.NewRaftLayer(ln, *cfg.TLS, pki.RaftLayerOptions{Advertise: advertise, Logger: log})
	if err != nil {
		ln.Close()
		return nil, err
	}
	return raft.NewNetworkTransportWithLogger(tlsStream{layer}, 3, 10*time.Second, hlog), nil
}

// tlsStream is the raft.StreamLayer of a pki.RaftLayer, whose Dial takes
// the address as a string (pki does not import raft: the client links it).
type tlsStream struct{ *pki.RaftLayer }

func (s tlsStream) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	return s.RaftLayer.Dial(string(address), timeout)
}

// Restore replaces the cluster's state with stateBytes (an encoded
// api.StateSnapshot, as View.Marshal gives) through Raft's user restore:
// the leader installs it as a snapshot at an index past its log, and
// every follower then receives that snapshot, so all of them hold the
// same state. The Raft configuration (which servers form the cluster) is
// this cluster's, not the snapshot's. It returns the last Raft index once
// the restore has replicated; on a follower it returns ErrNotLeader.
func (n *Node) Restore(ctx context.Context, stateBytes []byte) (uint64, error) {
	meta := &raft.SnapshotMeta{Version: raft.SnapshotVersionMax, Size: int64(len(stateBytes))}
	err := n.raft.Restore(meta, bytes.NewReader(stateBytes), timeoutOf(ctx))
	if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) {
		return 0, fmt.Errorf("%w: %v", ErrNotLeader, err)
	}
	if err != nil {
		return 0, fmt.Errorf("raft: restore: %w", err)
	}
	return n.raft.LastIndex(), nil
}

// Term is the current Raft term.
func (n *Node) Term() uint64 { return n.raft.CurrentTerm() }
