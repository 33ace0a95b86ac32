package netcoll

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"
)

// The store is rank 0's small TCP key-value service (the role of torch's
// TCPStore). Ranks publish their data-plane addresses in it during Init and
// keep their store connection open afterwards as the control plane: the
// store sees a rank's process die (its connection drops without a goodbye),
// collects failure reports, and pushes one verdict, naming the failed rank,
// to every rank.

// storeGrace is how long the store collects failure reports before it
// picks the culprit of a stall: the stalled rank is the one that is blamed
// but reports nothing itself.
const storeGrace = time.Second

type storeServer struct {
	ln      net.Listener
	key     []byte // the job's secret; nil: no authentication
	epoch   uint64
	world   int
	session uint64
	grace   time.Duration

	mu       sync.Mutex
	kv       map[string][]byte
	kvBytes  int           // keys and values held, bounded by maxStoreBytes
	changed  chan struct{} // closed and replaced on every set
	clients  map[int]*storePeer
	gone     map[int]bool // said goodbye or disconnected
	verdict  bool
	reports  []report
	judging  bool
	allGone  chan struct{}
	doneOnce sync.Once
	done     chan struct{}
	wg       sync.WaitGroup
}

type storePeer struct {
	rank int
	c    net.Conn
	wmu  sync.Mutex
}

type report struct {
	reporter, blamed int
	cause            string
}

func (p *storePeer) send(typ byte, payload []byte) error {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	p.c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	return writeFrame(p.c, typ, payload)
}

func newStoreServer(ln net.Listener, key []byte, epoch uint64, world int) *storeServer {
	var b [8]byte
	rand.Read(b[:])
	s := &storeServer{
		ln: ln, key: key, epoch: epoch, world: world,
		session: binary.BigEndian.Uint64(b[:]),
		grace:   storeGrace,
		kv:      map[string][]byte{},
		changed: make(chan struct{}),
		clients: map[int]*storePeer{},
		gone:    map[int]bool{},
		allGone: make(chan struct{}),
		done:    make(chan struct{}),
	}
	s.wg.Add(1)
	go s.acceptLoop()
	return s
}

func (s *storeServer) acceptLoop() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.wg.Add(1)
		go s.serve(c)
	}
}

func (s *storeServer) serve(c net.Conn) {
	defer s.wg.Done()
	defer c.Close()
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetKeepAlivePeriod(5 * time.Second)
		tc.SetNoDelay(true)
	}
	// A connection proves it knows the job's secret before the store reads
	// anything else from it, and it has 30 s to say who it is.
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if authAccept(c, s.key, purposeStore) != nil {
		return
	}
	f, err := readFrame(c)
	if err != nil || f.typ != msgHello {
		return
	}
	d := dec{b: f.b}
	epoch, rank, world := d.u64(), int(d.u32()), int(d.u32())
	p := &storePeer{rank: rank, c: c}
	reject := func(format string, args ...any) {
		p.send(msgErr, enc(nil).str(fmt.Sprintf(format, args...)))
	}
	switch {
	case d.err != nil:
		return
	case epoch != s.epoch:
		reject("%v: rank %d has epoch %d, the store has epoch %d", ErrEpochMismatch, rank, epoch, s.epoch)
		return
	case world != s.world:
		reject("rank %d has world size %d, rank 0 has %d", rank, world, s.world)
		return
	case rank < 0 || rank >= s.world:
		reject("rank %d out of range [0, %d)", rank, s.world)
		return
	}
	s.mu.Lock()
	if _, dup := s.clients[rank]; dup || s.gone[rank] {
		s.mu.Unlock()
		reject("rank %d joined twice", rank)
		return
	}
	s.clients[rank] = p
	s.mu.Unlock()
	c.SetDeadline(time.Time{})
	if p.send(msgOK, enc(nil).u64(s.session)) != nil {
		s.lost(rank, "lost its connection to the store during rendezvous")
		return
	}
	for {
		f, err := readFrame(c)
		if err != nil {
			s.lost(rank, "lost its connection to the store (process exited or host unreachable)")
			return
		}
		d := dec{b: f.b}
		switch f.typ {
		case msgSet:
			k, v := d.str(), d.bytes()
			s.mu.Lock()
			grown := s.kvBytes + len(k) + len(v)
			if old, ok := s.kv[k]; ok {
				grown -= len(k) + len(old)
			}
			if grown > maxStoreBytes {
				s.mu.Unlock()
				s.lost(rank, fmt.Sprintf("stored more than the rendezvous store's %d bytes", maxStoreBytes))
				return
			}
			s.kvBytes = grown
			s.kv[k] = v
			close(s.changed)
			s.changed = make(chan struct{})
			s.mu.Unlock()
			p.send(msgOK, nil)
		case msgGet:
			k := d.str()
			for {
				s.mu.Lock()
				v, ok := s.kv[k]
				ch := s.changed
				s.mu.Unlock()
				if ok {
					p.send(msgValue, enc(nil).bytes(v))
					break
				}
				select {
				case <-ch:
				case <-s.done:
					return
				}
			}
		case msgFail:
			blamed := int(int32(d.u32()))
			cause := d.str()
			s.report(rank, blamed, cause)
		case msgBye:
			s.markGone(rank)
			return
		}
	}
}

func (s *storeServer) markGone(rank int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gone[rank] {
		return
	}
	s.gone[rank] = true
	delete(s.clients, rank)
	if len(s.gone) == s.world {
		close(s.allGone)
	}
}

// lost handles a connection that dropped without a goodbye.
func (s *storeServer) lost(rank int, why string) {
	s.mu.Lock()
	bye := s.gone[rank]
	s.mu.Unlock()
	if bye {
		return
	}
	s.markGone(rank)
	s.declare(rank, why)
}

// declare sets the verdict once and pushes it to every rank still connected.
func (s *storeServer) declare(peer int, reason string) {
	s.mu.Lock()
	if s.verdict {
		s.mu.Unlock()
		return
	}
	s.verdict = true
	// Rank 0's own client hears last: once it has the verdict its process
	// may exit, taking the store with it.
	peers := make([]*storePeer, 0, len(s.clients))
	for r := s.world - 1; r >= 0; r-- {
		if p, ok := s.clients[r]; ok {
			peers = append(peers, p)
		}
	}
	s.mu.Unlock()
	msg := enc(nil).u32(uint32(int32(peer))).str(reason)
	for _, p := range peers {
		p.send(msgAbort, msg)
	}
}

func (s *storeServer) report(reporter, blamed int, cause string) {
	if reporter == blamed {
		s.declare(blamed, cause) // the rank aborted itself: no doubt who
		return
	}
	s.mu.Lock()
	if s.verdict {
		s.mu.Unlock()
		return
	}
	// One report per reporter is kept (its first): a rank cannot grow the
	// list by repeating itself.
	for _, r := range s.reports {
		if r.reporter == reporter {
			s.mu.Unlock()
			return
		}
	}
	s.reports = append(s.reports, report{reporter, blamed, cause})
	start := !s.judging
	s.judging = true
	s.mu.Unlock()
	if start {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			select {
			case <-time.After(s.grace):
			case <-s.done:
				return
			}
			s.judge()
		}()
	}
}

// judge picks the culprit among the reports: a blamed rank that did not
// report anything itself is stuck outside the collective; otherwise the
// first report stands.
func (s *storeServer) judge() {
	s.mu.Lock()
	reporters := map[int]bool{}
	for _, r := range s.reports {
		reporters[r.reporter] = true
	}
	pick := s.reports[0]
	for _, r := range s.reports {
		if !reporters[r.blamed] {
			pick = r
			break
		}
	}
	s.mu.Unlock()
	s.declare(pick.blamed, fmt.Sprintf("reported by rank %d: %s", pick.reporter, pick.cause))
}

// close waits up to wait for every rank to say goodbye (or drop), then
// shuts the store down.
func (s *storeServer) close(wait time.Duration) {
	t := time.NewTimer(wait)
	select {
	case <-s.allGone:
	case <-t.C:
	}
	t.Stop()
	s.doneOnce.Do(func() { close(s.done) })
	s.ln.Close()
	s.mu.Lock()
	for _, p := range s.clients {
		p.c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// storeClient is a rank's connection to the store.
type storeClient struct {
	c       net.Conn
	wmu     sync.Mutex
	session uint64
	closing bool
}

// dialStore connects and says hello, retrying until ctx ends: rank 0 may
// not be listening yet, or an old generation's store may still hold the
// port.
func dialStore(ctx context.Context, addr string, key []byte, epoch uint64, rank, world int) (*storeClient, error) {
	var last error
	backoff := 20 * time.Millisecond
	for {
		sc, err := tryDialStore(ctx, addr, key, epoch, rank, world)
		if err == nil {
			return sc, nil
		}
		last = err
		var perm permanentError
		if errors.As(err, &perm) {
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("netcoll: rank %d: cannot reach the store at %s: %w (last error: %v)", rank, addr, ctx.Err(), last)
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, time.Second)
	}
}

// permanentError is a refusal that retrying cannot change.
type permanentError struct{ error }

func (e permanentError) Unwrap() error { return e.error }

func tryDialStore(ctx context.Context, addr string, key []byte, epoch uint64, rank, world int) (*storeClient, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
		tc.SetKeepAlivePeriod(5 * time.Second)
	}
	sc := &storeClient{c: c}
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if err := authDial(c, key, purposeStore); err != nil {
		c.Close()
		if errors.Is(err, ErrAuth) {
			// The store at MASTER_ADDR:MASTER_PORT is this job's: a
			// different secret is a launcher's mistake, not a race.
			return nil, permanentError{fmt.Errorf("netcoll: rank %d: store at %s: %w", rank, addr, err)}
		}
		return nil, err
	}
	if err := writeFrame(c, msgHello, enc(nil).u64(epoch).u32(uint32(rank)).u32(uint32(world))); err != nil {
		c.Close()
		return nil, err
	}
	f, err := readFrame(c)
	if err != nil {
		c.Close()
		return nil, err
	}
	d2 := dec{b: f.b}
	switch f.typ {
	case msgOK:
		sc.session = d2.u64()
		return sc, nil
	case msgErr:
		c.Close()
		reason := d2.str()
		err := fmt.Errorf("netcoll: store refused rank %d: %s", rank, reason)
		if strings.Contains(reason, "epoch mismatch") {
			return nil, err // maybe a stale store: retry until it goes away
		}
		return nil, permanentError{err}
	}
	c.Close()
	return nil, fmt.Errorf("netcoll: store: unexpected reply %q", f.typ)
}

// call sends one request and reads its reply (rendezvous only, before the
// reader starts).
func (sc *storeClient) call(ctx context.Context, typ byte, payload []byte) (frame, error) {
	stop := context.AfterFunc(ctx, func() { sc.c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if err := writeFrame(sc.c, typ, payload); err != nil {
		return frame{}, err
	}
	f, err := readFrame(sc.c)
	if err != nil {
		if ctx.Err() != nil {
			return frame{}, ctx.Err()
		}
		return frame{}, fmt.Errorf("netcoll: store connection lost: %w", err)
	}
	if f.typ == msgAbort {
		d := dec{b: f.b}
		peer := int(int32(d.u32()))
		return frame{}, fmt.Errorf("%w: rank %d %s during rendezvous", ErrPeerFailed, peer, d.str())
	}
	return f, nil
}

func (sc *storeClient) set(ctx context.Context, key string, val []byte) error {
	_, err := sc.call(ctx, msgSet, enc(nil).str(key).bytes(val))
	return err
}

func (sc *storeClient) get(ctx context.Context, key string) ([]byte, error) {
	f, err := sc.call(ctx, msgGet, enc(nil).str(key))
	if err != nil {
		return nil, err
	}
	d := dec{b: f.b}
	v := d.bytes()
	return v, d.err
}

// readLoop delivers the store's verdict, or the loss of the store itself
// (rank 0 died), to onVerdict. It returns when the connection closes.
func (sc *storeClient) readLoop(onVerdict func(peer int, reason string)) {
	for {
		f, err := readFrame(sc.c)
		if err != nil {
			sc.wmu.Lock()
			closing := sc.closing
			sc.wmu.Unlock()
			if !closing {
				onVerdict(0, "lost the connection to the store on rank 0 (process exited or host unreachable)")
			}
			return
		}
		if f.typ == msgAbort {
			d := dec{b: f.b}
			peer := int(int32(d.u32()))
			onVerdict(peer, d.str())
		}
	}
}

func (sc *storeClient) fail(peer int, cause string) {
	sc.wmu.Lock()
	defer sc.wmu.Unlock()
	if sc.closing {
		return
	}
	sc.c.SetWriteDeadline(time.Now().Add(2 * time.Second))
	writeFrame(sc.c, msgFail, enc(nil).u32(uint32(int32(peer))).str(cause))
}

func (sc *storeClient) bye() {
	sc.wmu.Lock()
	if !sc.closing {
		sc.closing = true
		sc.c.SetWriteDeadline(time.Now().Add(2 * time.Second))
		writeFrame(sc.c, msgBye, nil)
	}
	sc.wmu.Unlock()
	sc.c.Close()
}
