// Package gossip wraps hashicorp/memberlist for Loom: servers and agents
// share one pool, each member carries its role, name, API address and
// version, traffic is encrypted with a shared key (a keyring, for
// rotation), and timings are tuned for a LAN so a dead node is known in
// about a second. It reports membership changes; deciding what they mean
// (a node is down) is the leader's job in package server.
package gossip

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// Role says what a member is.
type Role string

// The roles in the pool.
const (
	RoleServer Role = "server"
	RoleAgent  Role = "agent"
)

// Meta is what each member tells the others about itself.
type Meta struct {
	Role    Role   `json:"role"`
	Name    string `json:"name"` // node name (agents) or server id
	RPCAddr string `json:"rpc,omitempty"`
	Version string `json:"version,omitempty"`
}

// Timing tunes failure detection.
type Timing struct {
	ProbeInterval  time.Duration // how often each member probes a random other
	ProbeTimeout   time.Duration // how long a probe waits for an ack
	GossipInterval time.Duration
	// SuspicionMult scales how long a suspect stays suspect before it is
	// declared dead (× log10(members) × ProbeInterval); the max multiplier
	// bounds that time while few members confirm the suspicion.
	SuspicionMult, SuspicionMaxTimeoutMult int
	// PushPullInterval is how often a member syncs its whole view with a
	// random other. It is what tells a member cut off by a partition that
	// the others declared it dead, so it refutes that and comes back.
	PushPullInterval time.Duration
}

// DefaultTiming is tuned for a datacenter LAN: a member that stops
// answering is dead after about one second instead of memberlist's 5-25 s.
func DefaultTiming() Timing {
	return Timing{
		ProbeInterval:           200 * time.Millisecond,
		ProbeTimeout:            100 * time.Millisecond,
		GossipInterval:          100 * time.Millisecond,
		SuspicionMult:           3,
		SuspicionMaxTimeoutMult: 2,
		PushPullInterval:        5 * time.Second,
	}
}

// Config sets up one member.
type Config struct {
	Name          string // unique in the pool
	BindAddr      string // host:port for TCP and UDP; port 0 picks one
	AdvertiseAddr string // host:port others reach it at, default the bind address
	// Keys is the keyring: the first key encrypts, all of them decrypt.
	// Empty means no encryption. Each key is 16, 24 or 32 bytes.
	Keys   [][]byte
	Meta   Meta
	Timing Timing
	Logger *slog.Logger
}

// EventType is the kind of a membership change.
type EventType int

// Membership changes.
const (
	MemberJoin   EventType = iota + 1 // a member joined or came back
	MemberLeave                       // a member died or left
	MemberUpdate                      // a member's metadata changed
)

func (t EventType) String() string {
	switch t {
	case MemberJoin:
		return "join"
	case MemberLeave:
		return "leave"
	case MemberUpdate:
		return "update"
	}
	return "unknown"
}

// Member is one member of the pool.
type Member struct {
	Name  string
	Addr  string
	Meta  Meta
	Alive bool
}

// Event is one membership change.
type Event struct {
	Type   EventType
	Member Member
	At     time.Time
}

// Gossip is a running member.
type Gossip struct {
	ml     *memberlist.Memberlist
	meta   []byte
	events chan Event
	log    *slog.Logger

	mu     sync.Mutex
	closed bool
}

// ErrWrongKey is wrapped by Join when the pool would not talk to us: the
// most common cause is a gossip key that differs from the other members'.
var ErrWrongKey = errors.New("gossip: no member answered; check that every node uses the same gossip key")

// New starts a member. It is alone until Join.
func New(cfg Config) (*Gossip, error) {
	logger := cfg.Logger
	if logger == nil {
		logger = slog.Default()
	}
	meta, err := json.Marshal(cfg.Meta)
	if err != nil {
		return nil, err
	}
	if len(meta) > memberlist.MetaMaxSize {
		return nil, fmt.Errorf("gossip: metadata of %d bytes is over memberlist's %d", len(meta), memberlist.MetaMaxSize)
	}
	g := &Gossip{meta: meta, events: make(chan Event, 1024), log: logger.With("component", "gossip")}
	mc := memberlist.DefaultLANConfig()
	mc.Name = cfg.Name
	host, port, err := splitHostPort(cfg.BindAddr)
	if err != nil {
		return nil, fmt.Errorf("gossip: bind address %q: %w", cfg.BindAddr, err)
	}
	mc.BindAddr, mc.BindPort = host, port
	mc.AdvertisePort = port
	if cfg.AdvertiseAddr != "" {
		if mc.AdvertiseAddr, mc.AdvertisePort, err = splitHostPort(cfg.AdvertiseAddr); err != nil {
			return nil, fmt.Errorf("gossip: advertise address %q: %w", cfg.AdvertiseAddr, err)
		}
	}
	t := cfg.Timing
	if t == (Timing{}) {
		t = DefaultTiming()
	}
	mc.ProbeInterval, mc.ProbeTimeout, mc.GossipInterval = t.ProbeInterval, t.ProbeTimeout, t.GossipInterval
	mc.SuspicionMult, mc.SuspicionMaxTimeoutMult = t.SuspicionMult, t.SuspicionMaxTimeoutMult
	if t.PushPullInterval > 0 {
		mc.PushPullInterval = t.PushPullInterval
	}
	if len(cfg.Keys) > 0 {
		kr, err := memberlist.NewKeyring(cfg.Keys[1:], cfg.Keys[0])
		if err != nil {
			return nil, fmt.Errorf("gossip: keyring: %w", err)
		}
		mc.Keyring = kr
		mc.GossipVerifyIncoming, mc.GossipVerifyOutgoing = true, true
	}
	mc.Delegate = (*delegate)(g)
	mc.Events = (*eventDelegate)(g)
	mc.Logger = log.New(&logWriter{log: g.log}, "", 0)
	ml, err := memberlist.Create(mc)
	if err != nil {
		return nil, fmt.Errorf("gossip: start on %s: %w", cfg.BindAddr, err)
	}
	g.ml = ml
	return g, nil
}

func splitHostPort(addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil {
		return "", 0, err
	}
	if host == "" {
		host = "0.0.0.0"
	}
	return host, port, nil
}

// Join contacts the given members (host:port) and merges their view.
func (g *Gossip) Join(addrs []string) (int, error) {
	n, err := g.ml.Join(addrs)
	if n == 0 {
		if err == nil {
			err = errors.New("no address given")
		}
		g.log.Error("could not join the gossip pool; is the gossip key the same on every node?", "addrs", addrs, "err", err)
		return 0, fmt.Errorf("%w (joining %v: %v)", ErrWrongKey, addrs, err)
	}
	return n, nil
}

// Addr is this member's address as others reach it.
func (g *Gossip) Addr() string {
	n := g.ml.LocalNode()
	return net.JoinHostPort(n.Addr.String(), strconv.Itoa(int(n.Port)))
}

// Events delivers membership changes. The buffer is large; should it ever
// fill, events are dropped and consumers repair their view from Members.
func (g *Gossip) Events() <-chan Event { return g.events }

// Members returns every member this one knows of, alive or not.
func (g *Gossip) Members() []Member {
	var out []Member
	for _, n := range g.ml.Members() {
		out = append(out, toMember(n, true))
	}
	return out
}

// Leave tells the pool this member is going, then stops it.
func (g *Gossip) Leave(timeout time.Duration) error {
	err := g.ml.Leave(timeout)
	g.Close()
	return err
}

// Close stops the member without telling the pool (as a crash would).
func (g *Gossip) Close() error {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return nil
	}
	g.closed = true
	g.mu.Unlock()
	return g.ml.Shutdown()
}

func toMember(n *memberlist.Node, alive bool) Member {
	m := Member{Name: n.Name, Addr: net.JoinHostPort(n.Addr.String(), strconv.Itoa(int(n.Port))), Alive: alive && n.State == memberlist.StateAlive}
	_ = json.Unmarshal(n.Meta, &m.Meta)
	return m
}

func (g *Gossip) emit(t EventType, n *memberlist.Node) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return
	}
	ev := Event{Type: t, Member: toMember(n, t != MemberLeave), At: time.Now()}
	select {
	case g.events <- ev:
	default:
		g.log.Warn("gossip event dropped: consumer too slow", "member", n.Name, "event", t)
	}
}

type eventDelegate Gossip

func (e *eventDelegate) NotifyJoin(n *memberlist.Node)   { (*Gossip)(e).emit(MemberJoin, n) }
func (e *eventDelegate) NotifyLeave(n *memberlist.Node)  { (*Gossip)(e).emit(MemberLeave, n) }
func (e *eventDelegate) NotifyUpdate(n *memberlist.Node) { (*Gossip)(e).emit(MemberUpdate, n) }

type delegate Gossip

func (d *delegate) NodeMeta(limit int) []byte                  { return d.meta }
func (d *delegate) NotifyMsg([]byte)                           {}
func (d *delegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (d *delegate) LocalState(join bool) []byte                { return nil }
func (d *delegate) MergeRemoteState(buf []byte, join bool)     {}

// logWriter turns memberlist's "[LEVEL] memberlist: ..." lines into slog.
type logWriter struct{ log *slog.Logger }

func (w *logWriter) Write(p []byte) (int, error) {
	line := strings.TrimSpace(string(p))
	msg := line
	level := slog.LevelInfo
	for prefix, l := range map[string]slog.Level{"[ERR]": slog.LevelError, "[WARN]": slog.LevelWarn, "[DEBUG]": slog.LevelDebug, "[INFO]": slog.LevelInfo} {
		if i := strings.Index(line, prefix); i >= 0 {
			level, msg = l, strings.TrimSpace(line[i+len(prefix):])
		}
	}
	if strings.Contains(msg, "decrypt") || strings.Contains(msg, "No installed keys") {
		msg += " (a member with a different gossip key tried to talk to this one)"
	}
	w.log.Log(context.Background(), level, msg)
	return len(p), nil
}

var _ io.Writer = (*logWriter)(nil)

// GenerateKey returns a new random 32-byte key, base64-encoded, for
// --gossip-key (loom operator gossip keygen).
func GenerateKey() (string, error) {
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(k), nil
}

// DecodeKey parses a base64 key of 16, 24 or 32 bytes.
func DecodeKey(s string) ([]byte, error) {
	k, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
	if err != nil {
		return nil, fmt.Errorf("gossip: key is not base64: %w", err)
	}
	switch len(k) {
	case 16, 24, 32:
		return k, nil
	}
	return nil, fmt.Errorf("gossip: key is %d bytes, want 16, 24 or 32 (make one with loom operator gossip keygen)", len(k))
}
