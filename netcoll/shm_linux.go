//go:build linux

package netcoll

import (
	"context"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"
)

// Shared-memory transport: two single-producer single-consumer byte rings
// per pair of ranks on one host, in one file under /dev/shm that both map
// and that is unlinked as soon as both have it mapped (nothing is left
// behind if a rank dies). A waiting side sleeps on a futex in the shared
// page, so idle ranks do not burn the CPU their peers need.

const (
	ringHead     = 0   // u64: bytes written, by the writer
	ringTail     = 64  // u64: bytes read, by the reader
	ringWSeq     = 128 // u32: bumped by the writer after publishing
	ringRWaiting = 132 // u32: the reader sleeps on WSeq
	ringRSeq     = 192 // u32: bumped by the reader after consuming
	ringWWaiting = 196 // u32: the writer sleeps on RSeq
	ringData     = 256
)

type shmRing struct {
	mem  []byte // header + data
	data []byte
	size uint64
}

func newShmRing(mem []byte) *shmRing {
	return &shmRing{mem: mem, data: mem[ringData:], size: uint64(len(mem) - ringData)}
}

func (r *shmRing) u64(off int) *uint64 { return (*uint64)(unsafe.Pointer(&r.mem[off])) }
func (r *shmRing) u32(off int) *uint32 { return (*uint32)(unsafe.Pointer(&r.mem[off])) }

// shmConn is one rank's end of a pair of rings: it writes out and reads in.
type shmConn struct {
	file    string
	mapping []byte
	out, in *shmRing
	rdl     atomic.Int64 // read deadline, unix nanoseconds; 0 = none
	wdl     atomic.Int64
	closed  atomic.Bool
}

func (c *shmConn) SetReadDeadline(t time.Time) error {
	c.rdl.Store(deadlineNanos(t))
	futexWake(c.in.u32(ringWSeq)) // a sleeping reader rechecks its deadline
	return nil
}

func (c *shmConn) SetWriteDeadline(t time.Time) error {
	c.wdl.Store(deadlineNanos(t))
	futexWake(c.out.u32(ringRSeq))
	return nil
}

func deadlineNanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func (c *shmConn) Close() error {
	if c.closed.Swap(true) {
		return nil
	}
	futexWake(c.in.u32(ringWSeq))
	futexWake(c.out.u32(ringRSeq))
	return nil // the mapping stays until process exit: a worker may still touch it
}

// wait sleeps until *seq moves from seen, the deadline passes or the conn
// closes; waiting is the flag that asks the other side for a wake-up.
func (c *shmConn) wait(seq, waiting *uint32, seen uint32, ready func() bool, dl *atomic.Int64) error {
	for spin := 0; spin < 100; spin++ {
		if ready() {
			return nil
		}
		if spin%20 == 19 {
			runtime.Gosched()
		}
	}
	for {
		if c.closed.Load() {
			return io.ErrClosedPipe
		}
		d := time.Duration(50 * time.Millisecond)
		if t := dl.Load(); t != 0 {
			left := time.Duration(t - time.Now().UnixNano())
			if left <= 0 {
				return os.ErrDeadlineExceeded
			}
			d = min(d, left)
		}
		atomic.StoreUint32(waiting, 1)
		if ready() {
			atomic.StoreUint32(waiting, 0)
			return nil
		}
		futexWait(seq, seen, d)
		atomic.StoreUint32(waiting, 0)
		if ready() {
			return nil
		}
		seen = atomic.LoadUint32(seq)
	}
}

func (c *shmConn) Write(p []byte) (int, error) {
	r := c.out
	head := atomic.LoadUint64(r.u64(ringHead))
	written := 0
	for len(p) > 0 {
		if t := c.wdl.Load(); t != 0 && t < time.Now().UnixNano() {
			return written, os.ErrDeadlineExceeded
		}
		tail := atomic.LoadUint64(r.u64(ringTail))
		free := r.size - (head - tail)
		if free == 0 {
			seen := atomic.LoadUint32(r.u32(ringRSeq))
			err := c.wait(r.u32(ringRSeq), r.u32(ringWWaiting), seen, func() bool {
				return atomic.LoadUint64(r.u64(ringTail)) != tail
			}, &c.wdl)
			if err != nil {
				return written, err
			}
			continue
		}
		n := int(min(free, uint64(len(p))))
		at := head % r.size
		k := copy(r.data[at:], p[:n])
		if k < n {
			copy(r.data, p[k:n])
		}
		head += uint64(n)
		atomic.StoreUint64(r.u64(ringHead), head)
		atomic.AddUint32(r.u32(ringWSeq), 1)
		if atomic.LoadUint32(r.u32(ringRWaiting)) != 0 {
			futexWake(r.u32(ringWSeq))
		}
		p = p[n:]
		written += n
	}
	return written, nil
}

func (c *shmConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	r := c.in
	tail := atomic.LoadUint64(r.u64(ringTail))
	for {
		head := atomic.LoadUint64(r.u64(ringHead))
		if head != tail {
			n := int(min(head-tail, uint64(len(p))))
			at := tail % r.size
			k := copy(p[:n], r.data[at:])
			if k < n {
				copy(p[k:n], r.data)
			}
			atomic.StoreUint64(r.u64(ringTail), tail+uint64(n))
			atomic.AddUint32(r.u32(ringRSeq), 1)
			if atomic.LoadUint32(r.u32(ringWWaiting)) != 0 {
				futexWake(r.u32(ringRSeq))
			}
			return n, nil
		}
		if t := c.rdl.Load(); t != 0 && t < time.Now().UnixNano() {
			return 0, os.ErrDeadlineExceeded
		}
		seen := atomic.LoadUint32(r.u32(ringWSeq))
		err := c.wait(r.u32(ringWSeq), r.u32(ringRWaiting), seen, func() bool {
			return atomic.LoadUint64(r.u64(ringHead)) != tail
		}, &c.rdl)
		if err != nil {
			return 0, err
		}
	}
}

const (
	futexWaitOp = 0
	futexWakeOp = 1
)

func futexWait(addr *uint32, val uint32, d time.Duration) {
	ts := syscall.NsecToTimespec(int64(d))
	syscall.Syscall6(syscall.SYS_FUTEX, uintptr(unsafe.Pointer(addr)), futexWaitOp, uintptr(val), uintptr(unsafe.Pointer(&ts)), 0, 0)
}

func futexWake(addr *uint32) {
	syscall.Syscall6(syscall.SYS_FUTEX, uintptr(unsafe.Pointer(addr)), futexWakeOp, math.MaxInt32, 0, 0, 0)
}

// shmCreate makes and maps the file for a pair; the lower rank creates it.
func shmCreate(name string, ringBytes int) (*shmConn, error) {
	path := "/dev/shm/" + name
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	size := 2 * (ringData + ringBytes)
	if err := f.Truncate(int64(size)); err != nil {
		os.Remove(path)
		return nil, err
	}
	return shmMap(f, path, size, ringBytes, true)
}

// shmOpen maps the file the peer created and unlinks it.
func shmOpen(name string, ringBytes int) (*shmConn, error) {
	path := "/dev/shm/" + name
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	c, err := shmMap(f, path, 2*(ringData+ringBytes), ringBytes, false)
	os.Remove(path)
	return c, err
}

func shmMap(f *os.File, path string, size, ringBytes int, creator bool) (*shmConn, error) {
	mem, err := syscall.Mmap(int(f.Fd()), 0, size, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED)
	if err != nil {
		return nil, err
	}
	half := ringData + ringBytes
	a, b := newShmRing(mem[:half]), newShmRing(mem[half:])
	c := &shmConn{file: path, mapping: mem}
	if creator { // the creator (lower rank) writes ring a
		c.out, c.in = a, b
	} else {
		c.out, c.in = b, a
	}
	return c, nil
}

// upgradeLinks replaces the TCP link to every peer on this host with a
// shared-memory one (transport auto or shm). The pairs negotiate over
// their first TCP connection, which stays open unused: a rank whose
// process dies is still noticed by the store.
func (c *Comm) upgradeLinks(ctx context.Context, infos []peerInfo) error {
	if c.cfg.Transport != "auto" && c.cfg.Transport != "shm" {
		return nil
	}
	me := infos[c.rank].Host
	local := func(p int) bool { return p != c.rank && infos[p].Host == me }
	dl, _ := ctx.Deadline()
	type pending struct {
		sc   *shmConn
		name string
	}
	made := map[int]pending{}
	// 1: create a file for every higher local peer and send its name.
	for p := c.rank + 1; p < c.size; p++ {
		if !local(p) {
			continue
		}
		name := fmt.Sprintf("netcoll-%d-%x-%d-%d", os.Getpid(), c.store.session, c.rank, p)
		sc, err := shmCreate(name, c.cfg.ShmBytes)
		msg := enc{0}.str(name)
		if err != nil {
			msg = enc{1}.str(err.Error())
		} else {
			made[p] = pending{sc, name}
		}
		if err := sendMsg(c.links[p].conns[0], msg, dl); err != nil {
			return fmt.Errorf("netcoll: rank %d: shared-memory setup with rank %d: %w", c.rank, p, err)
		}
	}
	// 2: map the files of lower local peers and answer.
	for p := 0; p < c.rank; p++ {
		if !local(p) {
			continue
		}
		b, err := recvMsg(c.links[p].conns[0], dl)
		if err != nil {
			return fmt.Errorf("netcoll: rank %d: shared-memory setup with rank %d: %w", c.rank, p, err)
		}
		d := dec{b: b[1:]}
		name := d.str()
		var sc *shmConn
		status := byte(1)
		if b[0] == 0 && d.err == nil {
			if sc, err = shmOpen(name, c.cfg.ShmBytes); err == nil {
				status = 0
			}
		}
		if err := sendMsg(c.links[p].conns[0], []byte{status}, dl); err != nil {
			return fmt.Errorf("netcoll: rank %d: shared-memory setup with rank %d: %w", c.rank, p, err)
		}
		if status == 0 {
			c.links[p].useShm(sc)
		}
	}
	// 3: collect the answers of higher peers.
	for p := c.rank + 1; p < c.size; p++ {
		if !local(p) {
			continue
		}
		b, err := recvMsg(c.links[p].conns[0], dl)
		if err != nil {
			return fmt.Errorf("netcoll: rank %d: shared-memory setup with rank %d: %w", c.rank, p, err)
		}
		pd, ok := made[p]
		os.Remove("/dev/shm/" + pd.name)
		if ok && len(b) == 1 && b[0] == 0 {
			c.links[p].useShm(pd.sc)
		}
	}
	return nil
}

func (l *link) useShm(sc *shmConn) {
	l.idle = append(l.idle, l.conns...)
	l.conns = []conn{sc}
	l.kind = "shm"
}
