package pki

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"sync"
	"time"
)

// DefaultHandshakeTimeout bounds a Raft connection's TLS handshake when
// RaftLayerOptions or the transport give no other bound.
const DefaultHandshakeTimeout = 10 * time.Second

// RaftLayerOptions are the settings of NewRaftLayer.
type RaftLayerOptions struct {
	// Advertise is the address peers dial; nil means the listener's.
	Advertise net.Addr
	// HandshakeTimeout bounds an incoming connection's handshake; 0 means
	// DefaultHandshakeTimeout.
	HandshakeTimeout time.Duration
	// Logger receives a warning for each refused connection; nil means
	// slog.Default().
	Logger *slog.Logger
}

// RaftLayer is a hashicorp/raft StreamLayer over TLS. Both ways the peer
// must hold a server certificate of the cluster's CA: Accept hands the
// transport only connections whose client presented one, and Dial fails
// unless the dialed peer presents one. Each refusal is logged with its
// reason. Dial takes the address as a string, not raft's ServerAddress,
// because pki does not import raft (the loom client links pki and must not
// link raft): raftnode wraps it in the StreamLayer it hands to
// hraft.NewNetworkTransportWithLogger, whose Close closes it.
type RaftLayer struct {
	ln        net.Listener
	advertise net.Addr
	server    *tls.Config
	client    *tls.Config
	timeout   time.Duration
	log       *slog.Logger

	ready  chan net.Conn // handshaken connections for Accept
	ctx    context.Context
	cancel context.CancelFunc
	once   sync.Once
	wg     sync.WaitGroup
}

// NewRaftLayer returns a RaftLayer that accepts on ln and presents f.Cert,
// which should be the server's own certificate. It owns ln from then on.
func NewRaftLayer(ln net.Listener, f Files, opts RaftLayerOptions) (*RaftLayer, error) {
	server, err := ServerConfig(f, ServerOptions{ClientAuth: ClientCertRequired, Roles: []Role{RoleServer}})
	if err != nil {
		return nil, err
	}
	client, err := DaemonClientConfig(f)
	if err != nil {
		return nil, err
	}
	l := &RaftLayer{
		ln: ln, advertise: opts.Advertise, server: server, client: client,
		timeout: opts.HandshakeTimeout, log: opts.Logger,
		ready: make(chan net.Conn),
	}
	if l.timeout <= 0 {
		l.timeout = DefaultHandshakeTimeout
	}
	if l.log == nil {
		l.log = slog.Default()
	}
	l.ctx, l.cancel = context.WithCancel(context.Background())
	l.wg.Add(1)
	go l.acceptLoop()
	return l, nil
}

// acceptLoop accepts TCP connections and handshakes each in its own
// goroutine, so that a peer that stalls its handshake holds up no other.
func (l *RaftLayer) acceptLoop() {
	defer l.wg.Done()
	var delay time.Duration
	for {
		c, err := l.ln.Accept()
		if err != nil {
			if l.ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of descriptors or the like: back off as net/http does.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			l.log.Warn("raft: accept failed", "error", err, "retry_in", delay)
			select {
			case <-l.ctx.Done():
				return
			case <-time.After(delay):
			}
			continue
		}
		delay = 0
		l.wg.Add(1)
		go l.handshake(c)
	}
}

func (l *RaftLayer) handshake(raw net.Conn) {
	defer l.wg.Done()
	ctx, cancel := context.WithTimeout(l.ctx, l.timeout)
	defer cancel()
	tc := tls.Server(raw, l.server)
	if err := tc.HandshakeContext(ctx); err != nil {
		raw.Close()
		if l.ctx.Err() == nil {
			l.log.Warn("raft: refused an incoming connection", "remote_addr", raw.RemoteAddr().String(), "reason", err.Error())
		}
		return
	}
	select {
	case l.ready <- tc:
	case <-l.ctx.Done():
		tc.Close()
	}
}

// Accept returns the next connection whose peer holds a server
// certificate, or net.ErrClosed once the layer is closed.
func (l *RaftLayer) Accept() (net.Conn, error) {
	select {
	case c := <-l.ready:
		return c, nil
	case <-l.ctx.Done():
		return nil, net.ErrClosed
	}
}

// Dial connects to the server at address and returns the connection once
// the peer has shown a server certificate of the CA. timeout bounds the
// connection and the handshake together.
func (l *RaftLayer) Dial(address string, timeout time.Duration) (net.Conn, error) {
	if timeout <= 0 {
		timeout = l.timeout
	}
	ctx, cancel := context.WithTimeout(l.ctx, timeout)
	defer cancel()
	var d net.Dialer
	raw, err := d.DialContext(ctx, "tcp", address)
	if err != nil {
		return nil, err
	}
	tc := tls.Client(raw, l.client)
	if err := tc.HandshakeContext(ctx); err != nil {
		raw.Close()
		l.log.Warn("raft: refused to talk to a peer", "address", address, "reason", err.Error())
		return nil, err
	}
	return tc, nil
}

// Close stops accepting, closes the listener and waits for handshakes in
// progress to end. It is safe to call more than once.
func (l *RaftLayer) Close() error {
	var err error
	l.once.Do(func() {
		l.cancel()
		err = l.ln.Close()
		l.wg.Wait()
	})
	return err
}

// Addr returns the address peers dial: the advertised one if set.
func (l *RaftLayer) Addr() net.Addr {
	if l.advertise != nil {
		return l.advertise
	}
	return l.ln.Addr()
}
