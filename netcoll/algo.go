package netcoll

import "time"

// Algorithms over bytes. Each leaves its first transfer error in c.failed;
// the exported wrappers turn that into the communicator's error.

func (c *Comm) peerLink(r int) *link { return c.links[((r%c.size)+c.size)%c.size] }

// segBounds returns the byte range of segment i (taken mod n) when count
// elements of es bytes are split into n nearly equal segments.
func segBounds(i, n, count, es int) (int, int) {
	i = ((i % n) + n) % n
	return i * count / n * es, (i + 1) * count / n * es
}

// useRing reports whether a message of nbytes goes over the ring (true) or
// the latency-bound algorithms.
func (c *Comm) useRing(nbytes int) bool {
	switch c.cfg.Algo {
	case "ring":
		return true
	case "rd":
		return false
	}
	t := c.cfg.RingThreshold
	if t <= 0 {
		t = defaultRingThreshold
		if c.size == 2 {
			t = defaultRingThreshold2
		}
	}
	return nbytes >= t
}

// ringAllGatherSegs circulates the segments of buf: at the start this rank
// holds segment rank+shift; at the end it holds all of them.
func (c *Comm) ringAllGatherSegs(buf []byte, count, es, shift int, dl time.Time) {
	n, r := c.size, c.rank
	right, left := c.peerLink(r+1), c.peerLink(r-1)
	for s := 0; s < n-1 && !c.failed; s++ {
		so, se := segBounds(r+shift-s, n, count, es)
		ro, re := segBounds(r+shift-s-1, n, count, es)
		c.exchange(right, buf[so:se], left, buf[ro:re], dl, nil, nil)
	}
}

// rdAllReduce is recursive doubling. For a rank count that is not a power
// of two, the first 2*rem ranks pair up: even ones hand their data to the
// odd neighbour and wait for the result (MPICH's fold).
func (c *Comm) rdAllReduce(dt DType, op Op, send, recv []byte, dl time.Time) {
	if len(recv) > 0 && &send[0] != &recv[0] {
		copy(recv, send)
	}
	n, r := c.size, c.rank
	tmp := c.buffer(0, len(recv))
	p := 1
	for p*2 <= n {
		p *= 2
	}
	rem := n - p
	newr := r - rem
	if r < 2*rem {
		if r%2 == 0 {
			c.exchange(c.links[r+1], recv, nil, nil, dl, nil, nil)
			newr = -1
		} else {
			red := reduceSpec{dt: dt, op: op, dst: recv, a: recv, b: tmp, whole: true}
			c.exchange(nil, nil, c.links[r-1], tmp, dl, &red, nil)
			newr = r / 2
		}
	}
	if newr >= 0 {
		for mask := 1; mask < p && !c.failed; mask <<= 1 {
			np := newr ^ mask
			peer := np + rem
			if np < rem {
				peer = np*2 + 1
			}
			red := reduceSpec{dt: dt, op: op, dst: recv, a: recv, b: tmp, whole: true}
			c.exchange(c.links[peer], recv, c.links[peer], tmp, dl, &red, nil)
		}
	}
	if r < 2*rem {
		if r%2 == 1 {
			c.exchange(c.links[r-1], recv, nil, nil, dl, nil, nil)
		} else {
			c.exchange(nil, nil, c.links[r+1], recv, dl, nil, nil)
		}
	}
}

func (c *Comm) allReduce(dt DType, op Op, send, recv []byte, dl time.Time) {
	switch {
	case c.size == 1:
		if len(recv) > 0 && &send[0] != &recv[0] {
			copy(recv, send)
		}
	case c.useRing(len(recv)):
		c.ringPipelined(dt, op, send, recv, 0, true, dl)
	default:
		c.rdAllReduce(dt, op, send, recv, dl)
	}
	if op == Avg && !c.failed {
		scaleAvg(dt, recv, c.size)
	}
}

// reduceScatter leaves segment rank of the reduction of send (n equal
// segments of len(recv) bytes) in recv.
func (c *Comm) reduceScatter(dt DType, op Op, send, recv []byte, dl time.Time) {
	n, r := c.size, c.rank
	bs := len(recv)
	switch {
	case n == 1:
		copy(recv, send)
	case !c.useRing(len(send)):
		w := c.buffer(1, len(send))
		c.rdAllReduce(dt, op, send, w, dl)
		copy(recv, w[r*bs:(r+1)*bs])
	default:
		// The pipelined ring over a full-size work buffer, shifted so that
		// this rank ends up with segment rank.
		w := c.buffer(1, len(send))
		c.ringPipelined(dt, op, send, w, -1, false, dl)
		if !c.failed {
			copy(recv, w[r*bs:(r+1)*bs])
		}
	}
	if op == Avg && !c.failed {
		scaleAvg(dt, recv, n)
	}
}

// allGather gathers every rank's send (len(send) bytes) into recv in rank
// order.
func (c *Comm) allGather(send, recv []byte, dl time.Time) {
	n, r := c.size, c.rank
	bs := len(send)
	own := recv[r*bs : (r+1)*bs]
	if bs > 0 && &send[0] != &own[0] {
		copy(own, send)
	}
	if n == 1 || bs == 0 {
		return
	}
	if c.useRing(len(recv)) {
		c.ringAllGatherSegs(recv, n, bs, 0, dl)
		return
	}
	// Bruck: ceil(log2 n) steps for any n, in a rotated work buffer.
	w := c.buffer(1, len(recv))
	copy(w, own)
	for k := 1; k < n && !c.failed; k <<= 1 {
		cnt := min(k, n-k)
		c.exchange(c.peerLink(r-k), w[:cnt*bs], c.peerLink(r+k), w[k*bs:(k+cnt)*bs], dl, nil, nil)
	}
	if c.failed {
		return
	}
	for i := 0; i < n; i++ {
		j := (r + i) % n
		copy(recv[j*bs:(j+1)*bs], w[i*bs:(i+1)*bs])
	}
}

// broadcast sends root's buf to every rank: a binomial tree for small
// messages, a pipelined chain for large ones.
func (c *Comm) broadcast(buf []byte, root int, dl time.Time) {
	n, r := c.size, c.rank
	if n == 1 || len(buf) == 0 {
		return
	}
	v := (r - root + n) % n
	if c.useRing(len(buf)) {
		var left, right *link
		if v > 0 {
			left = c.peerLink(r - 1)
		}
		if v < n-1 {
			right = c.peerLink(r + 1)
		}
		if v == 0 {
			c.exchange(right, buf, nil, nil, dl, nil, nil)
		} else {
			c.exchange(nil, nil, left, buf, dl, nil, right)
		}
		return
	}
	mask := 1
	for mask < n {
		if v&mask != 0 {
			c.exchange(nil, nil, c.peerLink(r-mask), buf, dl, nil, nil)
			break
		}
		mask <<= 1
	}
	for mask >>= 1; mask > 0 && !c.failed; mask >>= 1 {
		if v+mask < n {
			c.exchange(c.peerLink(r+mask), buf, nil, nil, dl, nil, nil)
		}
	}
}

// reduce leaves the reduction of every rank's send in root's recv: a
// binomial tree for small messages; for large ones a ring reduce-scatter
// followed by a gather of the segments at root.
func (c *Comm) reduce(dt DType, op Op, send, recv []byte, root int, dl time.Time) {
	n, r, es := c.size, c.rank, dt.Size()
	work := recv
	if r != root {
		work = c.buffer(2, len(send))
	}
	switch {
	case n == 1:
		copy(recv, send)
	case c.useRing(len(send)):
		count := len(send) / es
		c.ringPipelined(dt, op, send, work, 0, false, dl)
		// After the reduce-scatter rank q holds segment q+1.
		if r == root {
			for q := 0; q < n && !c.failed; q++ {
				if q != r {
					o, e := segBounds(q+1, n, count, es)
					c.exchange(nil, nil, c.links[q], work[o:e], dl, nil, nil)
				}
			}
		} else {
			o, e := segBounds(r+1, n, count, es)
			c.exchange(c.links[root], work[o:e], nil, nil, dl, nil, nil)
		}
	default:
		if len(work) > 0 && &send[0] != &work[0] {
			copy(work, send)
		}
		v := (r - root + n) % n
		tmp := c.buffer(0, len(send))
		for mask := 1; mask < n && !c.failed; mask <<= 1 {
			if v&mask == 0 {
				if src := v | mask; src < n {
					red := reduceSpec{dt: dt, op: op, dst: work, a: work, b: tmp}
					c.exchange(nil, nil, c.peerLink(r+mask), tmp, dl, &red, nil)
				}
			} else {
				c.exchange(c.peerLink(r-mask), work, nil, nil, dl, nil, nil)
				break
			}
		}
	}
	if r == root && op == Avg && !c.failed {
		scaleAvg(dt, recv, n)
	}
}

// barrier is a dissemination barrier: ceil(log2 n) rounds of one byte.
func (c *Comm) barrier(dl time.Time) {
	n, r := c.size, c.rank
	b := c.buffer(2, 2)
	for k := 1; k < n && !c.failed; k <<= 1 {
		c.exchange(c.peerLink(r+k), b[:1], c.peerLink(r-k), b[1:2], dl, nil, nil)
	}
}
