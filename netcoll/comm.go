package netcoll

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Comm is a communicator: one rank's handle on a group of WorldSize ranks.
type Comm struct {
	cfg   Config
	rank  int
	size  int
	links []*link // by peer rank; nil at this rank

	store  *storeClient
	server *storeServer // rank 0 only

	// Failure state. verdict is set once; after that every call fails.
	verdict   atomic.Pointer[verdict]
	verdictCh chan struct{}
	aborted   atomic.Bool
	closed    atomic.Bool
	closeOnce sync.Once

	stop    chan struct{} // closed by Close: stops workers and the watcher
	wg      sync.WaitGroup
	watchCh chan context.Context
	unwatch chan struct{}

	// Per-call state, owned by the calling goroutine.
	sendDone     chan xdone
	recvDone     chan xdone
	nsend, nrecv int
	opDeadline   time.Time
	failed       bool
	failPeer     int
	failErr      error
	sst, rst     stream
	fst          stream
	chunkDone    []bool
	stepSends    []int
	bufs         [3][]byte
}

type verdict struct {
	peer int
	err  error
}

// Rank is this rank's index in [0, Size()).
func (c *Comm) Rank() int { return c.rank }

// Size is the number of ranks.
func (c *Comm) Size() int { return c.size }

// Transport reports the transport used to reach peer ("tcp", "shm",
// "rdma"), or "self".
func (c *Comm) Transport(peer int) string {
	if peer == c.rank || peer < 0 || peer >= c.size {
		return "self"
	}
	return c.links[peer].kind
}

// Err returns the communicator's sticky error, or nil while it is healthy.
func (c *Comm) Err() error {
	if v := c.verdict.Load(); v != nil {
		return c.opError("comm", v)
	}
	return nil
}

// Init joins the communicator described by cfg: it rendezvouses through
// rank 0's store, connects to every peer and starts the transport workers.
// It blocks until every rank has joined or ctx (bounded by
// cfg.ConnectTimeout) ends.
func Init(ctx context.Context, cfg Config) (*Comm, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.ConnectTimeout)
	defer cancel()

	c := &Comm{
		cfg: cfg, rank: cfg.Rank, size: cfg.WorldSize,
		links:     make([]*link, cfg.WorldSize),
		verdictCh: make(chan struct{}),
		stop:      make(chan struct{}),
		watchCh:   make(chan context.Context),
		unwatch:   make(chan struct{}),
	}
	storeAddr := hostPort(nil, cfg.MasterPort)
	if cfg.MasterAddr != "" {
		storeAddr = netJoin(cfg.MasterAddr, cfg.MasterPort)
	}
	if c.rank == 0 {
		ln := cfg.StoreListener
		if ln == nil {
			var err error
			ln, err = net.Listen("tcp", fmt.Sprintf(":%d", cfg.MasterPort))
			if err != nil {
				return nil, fmt.Errorf("netcoll: rank 0: store cannot listen on port %d: %w", cfg.MasterPort, err)
			}
		}
		if cfg.MasterAddr == "" || cfg.MasterPort <= 0 {
			storeAddr = ln.Addr().String()
		}
		c.server = newStoreServer(ln, cfg.key(), cfg.Epoch, cfg.WorldSize)
	}
	fail := func(err error) (*Comm, error) {
		if c.store != nil {
			c.store.bye()
		}
		if c.server != nil {
			c.server.close(0)
		}
		for _, l := range c.links {
			if l != nil {
				for _, cn := range append(l.conns, l.idle...) {
					cn.Close()
				}
			}
		}
		return nil, err
	}
	sc, err := dialStore(ctx, storeAddr, cfg.key(), cfg.Epoch, c.rank, c.size)
	if err != nil {
		return fail(err)
	}
	c.store = sc

	// Listen for peers on the address this host uses to reach rank 0.
	ip := sc.c.LocalAddr().(*net.TCPAddr).IP
	dln, err := net.Listen("tcp", hostPort(ip, 0))
	if err != nil {
		return fail(fmt.Errorf("netcoll: rank %d: listening for peers: %w", c.rank, err))
	}
	defer dln.Close()
	self := peerInfo{Addr: hostPort(ip, dln.Addr().(*net.TCPAddr).Port), Host: hostIdentity()}
	if err := sc.set(ctx, fmt.Sprintf("peer/%d", c.rank), self.marshal()); err != nil {
		return fail(err)
	}
	infos := make([]peerInfo, c.size)
	addrs := make([]string, c.size)
	for r := 0; r < c.size; r++ {
		b, err := sc.get(ctx, fmt.Sprintf("peer/%d", r))
		if err != nil {
			return fail(err)
		}
		infos[r] = unmarshalPeerInfo(b)
		addrs[r] = infos[r].Addr
	}
	mesh, err := buildTCPMesh(ctx, dln, cfg.key(), c.rank, c.size, cfg.NSocks, sc.session, cfg.Epoch, addrs)
	if err != nil {
		return fail(err)
	}
	for p := range c.size {
		if p != c.rank {
			c.links[p] = &link{peer: p, kind: "tcp", conns: mesh[p]}
		}
	}
	if cfg.Transport == "rdma" {
		err = c.rdmaLinks(ctx)
	} else {
		err = c.upgradeLinks(ctx, infos)
	}
	if err != nil {
		return fail(err)
	}

	// Size the completion channels so that a worker never blocks on them.
	total := 0
	for _, l := range c.links {
		if l != nil {
			total += len(l.conns)
		}
	}
	c.sendDone = make(chan xdone, total*(workerQueue+1))
	c.recvDone = make(chan xdone, total*(workerQueue+1))
	for _, l := range c.links {
		if l == nil {
			continue
		}
		for _, cn := range l.conns {
			s := &worker{c: c, cn: cn, peer: l.peer, send: true, q: make(chan xreq, workerQueue)}
			r := &worker{c: c, cn: cn, peer: l.peer, q: make(chan xreq, workerQueue)}
			l.send = append(l.send, s)
			l.recv = append(l.recv, r)
			c.wg.Add(2)
			go s.loop()
			go r.loop()
		}
	}
	c.wg.Add(2)
	go c.watchLoop()
	go func() {
		defer c.wg.Done()
		sc.readLoop(func(peer int, reason string) {
			c.setVerdict(peer, fmt.Errorf("%w: %s", ErrPeerFailed, reason))
		})
	}()
	return c, nil
}

func netJoin(host string, port int) string {
	return net.JoinHostPort(host, fmt.Sprint(port))
}

// peerInfo is what a rank publishes in the store.
type peerInfo struct {
	Addr string // host:port of its data listener
	Host string // identifies the machine (hostname and boot id)
}

func (p peerInfo) marshal() []byte { return enc(nil).str(p.Addr).str(p.Host) }

func unmarshalPeerInfo(b []byte) peerInfo {
	d := dec{b: b}
	return peerInfo{Addr: d.str(), Host: d.str()}
}

// hostIdentity tells ranks on one machine apart from ranks elsewhere: the
// hostname alone can repeat across containers, the boot id cannot.
// hostIdentity names what shared memory can cross: the same kernel
// (hostname and boot id) and the same /dev/shm. Ranks in containers with a
// private /dev/shm each, on one host, therefore talk over TCP.
func hostIdentity() string {
	h, _ := os.Hostname()
	b, _ := os.ReadFile("/proc/sys/kernel/random/boot_id")
	id := h + "/" + strings.TrimSpace(string(b))
	var st syscall.Stat_t
	if err := syscall.Stat("/dev/shm", &st); err == nil {
		id += fmt.Sprintf("/shm:%d:%d", st.Dev, st.Ino)
	}
	return id
}

// watchLoop aborts the communicator when the context of the collective in
// flight ends. It lives as long as the Comm so that calls do not start
// goroutines.
func (c *Comm) watchLoop() {
	defer c.wg.Done()
	for {
		select {
		case ctx := <-c.watchCh:
			select {
			case <-ctx.Done():
				c.localFailure(ctx.Err())
				select {
				case <-c.unwatch:
				case <-c.stop:
					return
				}
			case <-c.unwatch:
			case <-c.stop:
				return
			}
		case <-c.stop:
			return
		}
	}
}

// setVerdict records the communicator's failure once and stops all I/O.
func (c *Comm) setVerdict(peer int, err error) bool {
	if !c.verdict.CompareAndSwap(nil, &verdict{peer: peer, err: err}) {
		return false
	}
	close(c.verdictCh)
	c.abortIO()
	return true
}

// abortIO unblocks every transfer in flight; later ones fail at once.
func (c *Comm) abortIO() {
	c.aborted.Store(true)
	past := time.Unix(1, 0)
	for _, l := range c.links {
		if l == nil {
			continue
		}
		for _, cn := range l.conns {
			cn.SetReadDeadline(past)
			cn.SetWriteDeadline(past)
		}
	}
}

// localFailure fails the communicator for a reason of this rank's own
// (Abort, a cancelled context) and tells the others.
func (c *Comm) localFailure(err error) {
	if c.setVerdict(c.rank, err) {
		c.store.fail(c.rank, "aborted: "+strings.TrimPrefix(err.Error(), "netcoll: "))
	}
}

// Abort fails the communicator: a collective in flight on any goroutine
// returns promptly with ErrAborted, and every peer's collectives fail with
// an error naming this rank. Safe to call from any goroutine, more than
// once.
func (c *Comm) Abort() { c.localFailure(ErrAborted) }

// peerFailure handles a transfer to or from peer that failed: it reports
// the suspicion to the store and waits (briefly) for the store's verdict,
// which may name another rank, the one that actually died or stalled.
func (c *Comm) peerFailure(peer int, ioErr error) {
	if c.verdict.Load() != nil {
		return
	}
	c.abortIO()
	var cause error
	if errors.Is(ioErr, os.ErrDeadlineExceeded) {
		cause = ErrTimeout
	} else {
		cause = fmt.Errorf("%w: %v", ErrPeerFailed, ioErr)
	}
	c.store.fail(peer, strings.TrimPrefix(cause.Error(), "netcoll: "))
	t := time.NewTimer(storeGrace + 3*time.Second)
	select {
	case <-c.verdictCh:
	case <-t.C:
		c.setVerdict(peer, cause)
	}
	t.Stop()
}

func (c *Comm) opError(op string, v *verdict) error {
	return &Error{Op: op, Rank: c.rank, Peer: v.peer, Err: v.err}
}

// Close leaves the communicator. Rank 0 keeps its store up until every
// other rank has closed (or a bounded wait passes), so that a rank that
// finishes first does not fail the others.
func (c *Comm) Close() error {
	c.closeOnce.Do(func() {
		c.closed.Store(true)
		c.setVerdict(c.rank, ErrClosed)
		c.store.bye()
		if c.server != nil {
			c.server.close(time.Minute)
		}
		close(c.stop)
		for _, l := range c.links {
			if l == nil {
				continue
			}
			for _, cn := range l.conns {
				cn.Close()
			}
			for _, cn := range l.idle {
				cn.Close()
			}
		}
		c.wg.Wait()
	})
	return nil
}

// begin starts a collective: it refuses to run on a failed communicator and
// arms the context watcher. It returns the deadline transfers must honour.
func (c *Comm) begin(ctx context.Context, op string) (time.Time, error) {
	if v := c.verdict.Load(); v != nil {
		return time.Time{}, c.opError(op, v)
	}
	if err := ctx.Err(); err != nil {
		return time.Time{}, err // nothing was sent: the communicator is intact
	}
	if ctx.Done() != nil {
		c.watchCh <- ctx
	}
	c.failed, c.failPeer, c.failErr = false, -1, nil
	dl, _ := ctx.Deadline()
	c.opDeadline = dl
	return dl, nil
}

// end finishes a collective begun with begin, turning the first transfer
// error (c.failed) into the communicator's error.
func (c *Comm) end(ctx context.Context, op string) error {
	if ctx.Done() != nil {
		c.unwatch <- struct{}{}
	}
	failed, peer, ioErr := c.failed, c.failPeer, c.failErr
	if !failed && c.verdict.Load() == nil {
		return nil
	}
	// The context's deadline also bounds every transfer, and a transfer can
	// notice it a moment before the context does.
	ctxErr := ctx.Err()
	if ctxErr == nil && failed && !c.opDeadline.IsZero() && !time.Now().Before(c.opDeadline) {
		ctxErr = context.DeadlineExceeded
	}
	if failed && ctxErr != nil {
		c.localFailure(ctxErr)
		return &Error{Op: op, Rank: c.rank, Peer: c.rank, Err: ctxErr}
	}
	if failed {
		c.peerFailure(peer, ioErr)
	}
	return c.opError(op, c.verdict.Load())
}

// ioDeadline is when a transfer starting now gives up on its peer.
func (c *Comm) ioDeadline(op time.Time) time.Time {
	d := time.Now().Add(c.cfg.Timeout)
	if !op.IsZero() && op.Before(d) {
		d = op
	}
	return d
}

var errAbortedIO = errors.New("netcoll: transfer aborted")

func (c *Comm) writeFull(cn conn, b []byte, opDeadline time.Time) error {
	cn.SetWriteDeadline(c.ioDeadline(opDeadline))
	if c.aborted.Load() {
		return errAbortedIO
	}
	for len(b) > 0 {
		n, err := cn.Write(b)
		if err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}

func (c *Comm) readFull(cn conn, b []byte, opDeadline time.Time) error {
	cn.SetReadDeadline(c.ioDeadline(opDeadline))
	if c.aborted.Load() {
		return errAbortedIO
	}
	for len(b) > 0 {
		n, err := cn.Read(b)
		if n == 0 && err == nil {
			continue
		}
		if err != nil {
			if n > 0 && len(b) == n {
				return nil
			}
			return err
		}
		b = b[n:]
	}
	return nil
}
