package netcoll

import (
	"errors"
	"time"
)

var errPipelineStuck = errors.New("netcoll: internal error: ring pipeline cannot progress")

// ringPipelined is the ring allreduce (n-1 reduce-scatter steps, then n-1
// all-gather steps) with the steps overlapped: chunk i of step t is sent as
// soon as chunk i of step t-1 has arrived and been reduced, so the ring
// never drains between steps. Reduce-scatter chunks land in a small pool
// of staging slots that stays in cache, and are reduced as they arrive;
// receives run at most two steps ahead, and an all-gather receive waits
// until the send that read the same segment has completed.
//
// recv is the full-size work buffer (send may alias it). With allGather
// false only the n-1 reduce-scatter steps run, after which this rank holds
// the reduced segment rank+shift+1 (mod n) of recv.
func (c *Comm) ringPipelined(dt DType, op Op, send, recv []byte, shift int, allGather bool, dl time.Time) {
	n, r, es := c.size, c.rank, dt.Size()
	count := len(recv) / es
	steps := n - 1
	if allGather {
		steps = 2 * (n - 1)
	}
	chunk := c.cfg.ChunkBytes
	right, left := c.peerLink(r+1), c.peerLink(r-1)
	maxSeg := (count/n + 1) * es
	maxCh := (maxSeg+chunk-1)/chunk + 1
	nslots := stagingSlots(len(left.recv))
	stage := c.buffer(0, nslots*chunk)
	var busy [maxStaging]bool
	if cap(c.chunkDone) < 2*maxCh {
		c.chunkDone = make([]bool, 2*maxCh)
	}
	arrived := c.chunkDone[:2*maxCh]
	if cap(c.stepSends) < steps {
		c.stepSends = make([]int, steps)
	}
	sendsLeft := c.stepSends[:steps]
	clear(sendsLeft)

	// seg is the segment step t receives; step t (t >= 1) sends what step
	// t-1 received, and step 0 sends this rank's own segment.
	seg := func(t int) (int, int) {
		if t < n-1 {
			return segBounds(r+shift-t-1, n, count, es)
		}
		return segBounds(r+shift-(t-n+1), n, count, es)
	}
	var (
		st, spos, sidx int  // send cursor: step, byte, chunk
		rt, rpos, ridx int  // receive cursor
		rinit          bool // receive slot of rt initialised
		ready          [2]int
		remaining      [2]int
		slotStep       = [2]int{-1, -1}
	)
	for {
		posted := false
		// Post sends as far as the data is ready.
		for st < steps && !c.failed {
			o, e := segBounds(r+shift, n, count, es)
			src := send
			if st > 0 {
				o, e = seg(st - 1)
				src = recv
			}
			L := e - o
			if spos >= L {
				st, spos, sidx = st+1, 0, 0
				continue
			}
			limit := L
			if st > 0 {
				limit = 0
				if sl := (st - 1) % 2; slotStep[sl] == st-1 {
					limit = ready[sl]
				}
			}
			end := min(spos+chunk, L)
			if end > limit {
				break
			}
			w := right.send[sidx%len(right.send)]
			select {
			case w.q <- xreq{buf: src[o+spos : o+end], off: spos, tag: st, deadline: dl, done: c.sendDone}:
			default:
				goto recvs
			}
			posted = true
			c.nsend++
			sendsLeft[st]++
			spos, sidx = end, sidx+1
		}
	recvs:
		// Post receives, at most two steps ahead.
		for rt < steps && !c.failed {
			sl := rt % 2
			if !rinit {
				if rt >= 2 && (remaining[sl] > 0 || st <= rt-1) {
					break // the slot still serves step rt-2
				}
				if p := rt - (n - 1); p >= 0 && (st <= p || sendsLeft[p] > 0) {
					break // would overwrite a segment still being sent
				}
				o, e := seg(rt)
				slotStep[sl], ready[sl] = rt, 0
				remaining[sl] = (e - o + chunk - 1) / chunk
				clear(arrived[sl*maxCh : (sl+1)*maxCh])
				rinit = true
			}
			o, e := seg(rt)
			L := e - o
			if rpos >= L {
				if L == 0 {
					ready[sl] = 0
				}
				rt, rpos, ridx, rinit = rt+1, 0, 0, false
				continue
			}
			end := min(rpos+chunk, L)
			buf, slot := recv[o+rpos:o+end], -1
			if rt < n-1 {
				slot = ridx % nslots // chunks of a step go round the pool
				if busy[slot] {
					break
				}
				buf = stage[slot*chunk : slot*chunk+end-rpos]
			}
			w := left.recv[ridx%len(left.recv)]
			select {
			case w.q <- xreq{buf: buf, off: rpos, tag: rt, slot: slot, deadline: dl, done: c.recvDone}:
			default:
				goto wait
			}
			if slot >= 0 {
				busy[slot] = true
			}
			posted = true
			c.nrecv++
			rpos, ridx = end, ridx+1
		}
	wait:
		if c.nsend == 0 && c.nrecv == 0 {
			if c.failed || (st == steps && rt == steps) {
				return
			}
			if !posted {
				c.fail1(c.rank, errPipelineStuck)
				return
			}
			continue
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
			sl := d.tag % 2
			if d.slot >= 0 {
				o, _ := seg(d.tag)
				a, b := o+d.off, o+d.off+d.n
				reduceBytes(dt, op, recv[a:b], send[a:b], stage[d.slot*chunk:d.slot*chunk+d.n])
				busy[d.slot] = false
			}
			remaining[sl]--
			o, e := seg(d.tag)
			k := sl*maxCh + d.off/chunk
			arrived[k] = true
			for i := sl*maxCh + ready[sl]/chunk; i < (sl+1)*maxCh && arrived[i]; i++ {
				ready[sl] = min((i-sl*maxCh+1)*chunk, e-o)
			}
		case d := <-c.sendDone:
			c.nsend--
			if d.err != nil {
				c.fail1(d.peer, d.err)
				continue
			}
			sendsLeft[d.tag]--
		}
	}
}

// maxStaging bounds the staging pool: enough chunks in flight to keep every
// connection of the link busy with one queued behind, few enough to stay
// in cache.
const maxStaging = 16

func stagingSlots(nconns int) int { return min(maxStaging, max(4, 2*nconns+2)) }
