package netcoll

import "time"

// The engine moves the messages of one algorithm step. A step sends at most
// one message, receives at most one, and may forward what it receives
// (chain broadcast). Messages are cut into ChunkBytes chunks, chunk i going
// over conn i mod len(conns) of the link, and handed to the link's
// long-lived workers; the calling goroutine reduces each chunk as soon as
// it lands, so reduction overlaps the transfer of the following chunks.
// Small messages skip the workers and go over conn 0 inline.

// inlineMax is the largest message sent inline, by the calling goroutine
// (write, then read). It is below every socket and ring buffer size, so
// the write completes without the peer reading, and at most ChunkBytes, so
// an inline message is a single chunk on conn 0 either way.
const inlineMax = 64 << 10

// reduceSpec asks the engine to compute dst = a op b over each received
// chunk of b. With whole set it reduces once, after every chunk has been
// received and every send has completed (for algorithms that send the
// buffer they reduce into).
type reduceSpec struct {
	dt     DType
	op     Op
	dst, a []byte
	b      []byte
	whole  bool
}

// stream is a message being posted to a link's workers chunk by chunk.
type stream struct {
	l     *link
	send  bool
	buf   []byte
	pos   int // next byte to post
	idx   int // next chunk index
	limit int // bytes that may be posted (grows as a forwarded message arrives)
}

func (c *Comm) fail1(peer int, err error) {
	if !c.failed {
		c.failed, c.failPeer, c.failErr = true, peer, err
		c.abortIO()
	}
}

// pump posts as many chunks of s as the workers' queues take now.
func (c *Comm) pump(s *stream, dl time.Time) {
	if s.l == nil {
		return
	}
	chunk := c.cfg.ChunkBytes
	for s.pos < s.limit {
		end := min(s.pos+chunk, len(s.buf))
		if end > s.limit {
			return
		}
		var w *worker
		var done chan xdone
		if s.send {
			w = s.l.send[s.idx%len(s.l.send)]
			done = c.sendDone
		} else {
			w = s.l.recv[s.idx%len(s.l.recv)]
			done = c.recvDone
		}
		select {
		case w.q <- xreq{buf: s.buf[s.pos:end], off: s.pos, deadline: dl, done: done}:
		default:
			return
		}
		if s.send {
			c.nsend++
		} else {
			c.nrecv++
		}
		s.pos = end
		s.idx++
	}
}

func (s *stream) posted() bool { return s.l == nil || s.pos >= len(s.buf) }

// exchange sends sbuf to sendL while receiving rbuf from recvL (either may
// be nil), reducing per red and forwarding the received bytes to fwd.
// Errors are recorded in c.failed; callers check it after each step.
func (c *Comm) exchange(sendL *link, sbuf []byte, recvL *link, rbuf []byte, dl time.Time, red *reduceSpec, fwd *link) {
	if c.failed {
		return
	}
	if len(sbuf) == 0 {
		sendL = nil
	}
	if len(rbuf) == 0 {
		recvL, fwd = nil, nil
	}
	if lim := min(inlineMax, c.cfg.ChunkBytes); fwd == nil && len(sbuf) <= lim && len(rbuf) <= lim {
		if sendL != nil {
			if err := c.writeFull(sendL.conns[0], sbuf, dl); err != nil {
				c.fail1(sendL.peer, err)
				return
			}
		}
		if recvL != nil {
			if err := c.readFull(recvL.conns[0], rbuf, dl); err != nil {
				c.fail1(recvL.peer, err)
				return
			}
			if red != nil {
				reduceBytes(red.dt, red.op, red.dst, red.a, red.b)
			}
		}
		return
	}

	c.sst = stream{l: sendL, send: true, buf: sbuf, limit: len(sbuf)}
	c.rst = stream{l: recvL, buf: rbuf, limit: len(rbuf)}
	c.fst = stream{l: fwd, send: true, buf: rbuf}
	chunk := c.cfg.ChunkBytes
	if fwd != nil {
		nch := (len(rbuf) + chunk - 1) / chunk
		if cap(c.chunkDone) < nch {
			c.chunkDone = make([]bool, nch)
		}
		c.chunkDone = c.chunkDone[:nch]
		clear(c.chunkDone)
	}
	fwdNext := 0
	for {
		if !c.failed {
			c.pump(&c.sst, dl)
			c.pump(&c.rst, dl)
			c.pump(&c.fst, dl)
		}
		if (c.failed || (c.sst.posted() && c.rst.posted() && c.fst.posted())) && c.nsend == 0 && c.nrecv == 0 {
			break
		}
		select {
		case d := <-c.recvDone:
			c.nrecv--
			if d.err != nil {
				c.fail1(d.peer, d.err)
				continue
			}
			if c.failed {
				continue
			}
			if red != nil && !red.whole {
				e := d.off + d.n
				reduceBytes(red.dt, red.op, red.dst[d.off:e], red.a[d.off:e], red.b[d.off:e])
			}
			if fwd != nil {
				c.chunkDone[d.off/chunk] = true
				for fwdNext < len(c.chunkDone) && c.chunkDone[fwdNext] {
					fwdNext++
				}
				c.fst.limit = min(fwdNext*chunk, len(rbuf))
			}
		case d := <-c.sendDone:
			c.nsend--
			if d.err != nil {
				c.fail1(d.peer, d.err)
			}
		}
	}
	if !c.failed && red != nil && red.whole {
		reduceBytes(red.dt, red.op, red.dst, red.a, red.b)
	}
}

// buffers returns internal scratch of n bytes, 8-byte aligned; which picks
// one of three independent buffers. They grow once and are reused, so
// steady-state calls do not allocate.
func (c *Comm) buffer(which, n int) []byte {
	b := &c.bufs[which]
	if cap(*b) < n {
		*b = asBytes(make([]uint64, (n+7)/8))
	}
	return (*b)[:n]
}
