package netcoll

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"time"
)

// conn is one ordered, reliable byte stream to a peer: a TCP socket, a pair
// of shared-memory rings or an RDMA queue pair. Deadlines bound every
// blocking call; a deadline in the past unblocks calls in flight, which is
// how Abort stops a collective.
type conn interface {
	Read(p []byte) (int, error)
	Write(p []byte) (int, error)
	SetReadDeadline(t time.Time) error
	SetWriteDeadline(t time.Time) error
	Close() error
}

// link is everything this rank has towards one peer: one or more conns,
// striped chunk by chunk, each with a sending and a receiving worker.
type link struct {
	peer  int
	kind  string // "tcp", "shm" or "rdma"
	conns []conn
	idle  []conn // connections kept open but unused (TCP under shm)
	send  []*worker
	recv  []*worker
}

// xreq asks a worker to move one chunk.
type xreq struct {
	buf      []byte
	off      int
	tag      int       // the algorithm step, echoed in xdone
	slot     int       // staging slot, echoed in xdone
	deadline time.Time // the operation's deadline (from its context), or zero
	done     chan<- xdone
}

// xdone reports a finished chunk.
type xdone struct {
	off, n int
	tag    int
	slot   int
	peer   int
	err    error
}

// worker owns one direction of one conn for the lifetime of the Comm, so
// that a collective costs channel operations, not goroutines.
type worker struct {
	c    *Comm
	cn   conn
	peer int
	send bool
	q    chan xreq
}

const workerQueue = 64

func (w *worker) loop() {
	defer w.c.wg.Done()
	for {
		select {
		case r := <-w.q:
			var err error
			if w.send {
				err = w.c.writeFull(w.cn, r.buf, r.deadline)
			} else {
				err = w.c.readFull(w.cn, r.buf, r.deadline)
			}
			r.done <- xdone{off: r.off, n: len(r.buf), tag: r.tag, slot: r.slot, peer: w.peer, err: err}
		case <-w.c.stop:
			return
		}
	}
}

// Data-plane handshake, after authentication (auth.go): the dialling
// (higher) rank sends magic, session, epoch, rank, socket index, socket
// count; the listener answers one status byte.
const (
	handshakeMagic = 0x4e434f4c // "NCOL"
	handshakeLen   = 4 + 8 + 8 + 4 + 4 + 4
)

type hello struct {
	session, epoch uint64
	rank, sock, n  int
}

func (h hello) marshal() []byte {
	b := make([]byte, handshakeLen)
	binary.BigEndian.PutUint32(b[0:], handshakeMagic)
	binary.BigEndian.PutUint64(b[4:], h.session)
	binary.BigEndian.PutUint64(b[12:], h.epoch)
	binary.BigEndian.PutUint32(b[20:], uint32(h.rank))
	binary.BigEndian.PutUint32(b[24:], uint32(h.sock))
	binary.BigEndian.PutUint32(b[28:], uint32(h.n))
	return b
}

func unmarshalHello(b []byte) (hello, bool) {
	if binary.BigEndian.Uint32(b) != handshakeMagic {
		return hello{}, false
	}
	return hello{
		session: binary.BigEndian.Uint64(b[4:]),
		epoch:   binary.BigEndian.Uint64(b[12:]),
		rank:    int(binary.BigEndian.Uint32(b[20:])),
		sock:    int(binary.BigEndian.Uint32(b[24:])),
		n:       int(binary.BigEndian.Uint32(b[28:])),
	}, true
}

const sockBuf = 4 << 20

func tuneTCP(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
		tc.SetReadBuffer(sockBuf)
		tc.SetWriteBuffer(sockBuf)
		tc.SetKeepAlivePeriod(5 * time.Second)
	}
}

// buildTCPMesh connects this rank to every other: it dials each lower rank
// nsocks times and accepts from every higher rank. A connection that does
// not prove it knows key (the job's secret) is dropped before it is read
// from, and one with another session or epoch is refused, so neither a
// foreign process nor a stale rank of an earlier generation can join.
func buildTCPMesh(ctx context.Context, ln net.Listener, key []byte, rank, world, nsocks int, session, epoch uint64, addrs []string) ([][]conn, error) {
	mesh := make([][]conn, world)
	var mu sync.Mutex
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()

	// Accept from higher ranks.
	acceptErr := make(chan error, 1)
	go func() {
		want := world - 1 - rank // peers whose count is still unknown or incomplete
		got := map[int]int{}
		need := map[int]int{}
		for want > 0 {
			c, err := ln.Accept()
			if err != nil {
				acceptErr <- fmt.Errorf("netcoll: rank %d: accepting peer connections: %w", rank, err)
				return
			}
			c.SetDeadline(time.Now().Add(10 * time.Second))
			if authAccept(c, key, purposePeer) != nil {
				c.Close()
				continue // not a rank of this job: ignore it, keep waiting
			}
			var b [handshakeLen]byte
			if _, err := io.ReadFull(c, b[:]); err != nil {
				c.Close()
				continue
			}
			h, ok := unmarshalHello(b[:])
			mu.Lock()
			fits := ok && h.session == session && h.epoch == epoch && h.rank > rank && h.rank < world &&
				h.n >= 1 && h.n <= maxNSocks && h.sock < h.n &&
				(mesh[h.rank] == nil || len(mesh[h.rank]) == h.n && mesh[h.rank][h.sock] == nil)
			mu.Unlock()
			if !fits {
				c.Write([]byte{1})
				c.Close()
				continue // a stale rank, or a socket count or index out of bounds: keep waiting
			}
			if _, err := c.Write([]byte{0}); err != nil {
				c.Close()
				continue
			}
			c.SetDeadline(time.Time{})
			tuneTCP(c)
			mu.Lock()
			if mesh[h.rank] == nil {
				mesh[h.rank] = make([]conn, h.n)
			}
			mesh[h.rank][h.sock] = c.(conn)
			mu.Unlock()
			got[h.rank]++
			need[h.rank] = h.n
			if got[h.rank] == h.n {
				want--
			}
		}
		acceptErr <- nil
	}()

	var dialErr error
	for peer := 0; peer < rank && dialErr == nil; peer++ {
		conns := make([]conn, nsocks)
		for s := 0; s < nsocks; s++ {
			c, err := dialPeer(ctx, addrs[peer], key, hello{session, epoch, rank, s, nsocks})
			if err != nil {
				dialErr = fmt.Errorf("netcoll: rank %d: connecting to rank %d at %s: %w", rank, peer, addrs[peer], err)
				break
			}
			conns[s] = c
		}
		mu.Lock()
		mesh[peer] = conns
		mu.Unlock()
	}
	if dialErr != nil {
		ln.Close()
	}
	aerr := <-acceptErr
	err := dialErr
	if err == nil {
		err = aerr
	}
	if err != nil {
		for _, cs := range mesh {
			for _, c := range cs {
				if c != nil {
					c.Close()
				}
			}
		}
		return nil, err
	}
	return mesh, nil
}

func dialPeer(ctx context.Context, addr string, key []byte, h hello) (conn, error) {
	var d net.Dialer
	backoff := 10 * time.Millisecond
	for {
		c, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			tuneTCP(c)
			c.SetDeadline(time.Now().Add(10 * time.Second))
			err = greetPeer(c, key, h)
			if err == nil {
				c.SetDeadline(time.Time{})
				return c.(conn), nil
			}
			c.Close()
			if errors.Is(err, ErrAuth) || errors.Is(err, ErrEpochMismatch) {
				return nil, err
			}
		}
		if ctx.Err() != nil {
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 500*time.Millisecond)
	}
}

// greetPeer authenticates c and introduces this rank to the peer. ErrAuth
// and ErrEpochMismatch are final; other errors are worth a retry (the peer
// may not be listening yet).
func greetPeer(c net.Conn, key []byte, h hello) error {
	if err := authDial(c, key, purposePeer); err != nil {
		return err
	}
	if _, err := c.Write(h.marshal()); err != nil {
		return err
	}
	var st [1]byte
	if _, err := io.ReadFull(c, st[:]); err != nil {
		return err
	}
	if st[0] != 0 {
		return fmt.Errorf("%w or session: refused by the peer", ErrEpochMismatch)
	}
	return nil
}

func hostPort(ip net.IP, port int) string {
	return net.JoinHostPort(ip.String(), strconv.Itoa(port))
}
