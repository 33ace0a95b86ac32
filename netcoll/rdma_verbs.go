//go:build rdma && linux && cgo

package netcoll

/*
#cgo LDFLAGS: -libverbs
#include <infiniband/verbs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include <errno.h>

// One reliable-connected queue pair per peer, moving bytes with SEND/RECV
// through registered bounce buffers: nslots receive slots stay posted, and
// a send waits for its completion before the slot is reused.
typedef struct {
	struct ibv_context *ctx;
	struct ibv_pd *pd;
	struct ibv_cq *scq, *rcq;
	struct ibv_qp *qp;
	struct ibv_mr *smr, *rmr;
	char *sbuf, *rbuf;
	int nslots, slotsize;
	uint8_t port;
	uint16_t lid;
	union ibv_gid gid;
	uint32_t psn;
} nc_rdma;

static int nc_open(nc_rdma *r, int nslots, int slotsize, char *err, int errlen) {
	int n = 0;
	memset(r, 0, sizeof *r);
	struct ibv_device **list = ibv_get_device_list(&n);
	if (list == NULL || n == 0) {
		snprintf(err, errlen, "no RDMA devices found");
		if (list) ibv_free_device_list(list);
		return -1;
	}
	r->ctx = ibv_open_device(list[0]);
	ibv_free_device_list(list);
	if (!r->ctx) { snprintf(err, errlen, "ibv_open_device: %s", strerror(errno)); return -1; }
	r->port = 1;
	struct ibv_port_attr pa;
	if (ibv_query_port(r->ctx, r->port, &pa)) { snprintf(err, errlen, "ibv_query_port: %s", strerror(errno)); return -1; }
	r->lid = pa.lid;
	if (ibv_query_gid(r->ctx, r->port, 0, &r->gid)) { snprintf(err, errlen, "ibv_query_gid: %s", strerror(errno)); return -1; }
	r->pd = ibv_alloc_pd(r->ctx);
	r->scq = ibv_create_cq(r->ctx, nslots, NULL, NULL, 0);
	r->rcq = ibv_create_cq(r->ctx, nslots, NULL, NULL, 0);
	if (!r->pd || !r->scq || !r->rcq) { snprintf(err, errlen, "allocating PD/CQ: %s", strerror(errno)); return -1; }
	r->nslots = nslots; r->slotsize = slotsize;
	r->sbuf = malloc((size_t)slotsize);
	r->rbuf = malloc((size_t)nslots * slotsize);
	r->smr = ibv_reg_mr(r->pd, r->sbuf, slotsize, IBV_ACCESS_LOCAL_WRITE);
	r->rmr = ibv_reg_mr(r->pd, r->rbuf, (size_t)nslots * slotsize, IBV_ACCESS_LOCAL_WRITE);
	if (!r->smr || !r->rmr) { snprintf(err, errlen, "ibv_reg_mr: %s", strerror(errno)); return -1; }
	struct ibv_qp_init_attr qa = {0};
	qa.send_cq = r->scq; qa.recv_cq = r->rcq; qa.qp_type = IBV_QPT_RC;
	qa.cap.max_send_wr = 1; qa.cap.max_recv_wr = nslots; qa.cap.max_send_sge = 1; qa.cap.max_recv_sge = 1;
	r->qp = ibv_create_qp(r->pd, &qa);
	if (!r->qp) { snprintf(err, errlen, "ibv_create_qp: %s", strerror(errno)); return -1; }
	r->psn = (uint32_t)(((uintptr_t)r) & 0xffffff);
	return 0;
}

static int nc_post_recv(nc_rdma *r, int slot) {
	struct ibv_sge sge = { (uintptr_t)(r->rbuf + (size_t)slot * r->slotsize), r->slotsize, r->rmr->lkey };
	struct ibv_recv_wr wr = {0}, *bad;
	wr.wr_id = slot; wr.sg_list = &sge; wr.num_sge = 1;
	return ibv_post_recv(r->qp, &wr, &bad);
}

static int nc_connect(nc_rdma *r, uint32_t qpn, uint16_t lid, uint8_t *gid, uint32_t psn, char *err, int errlen) {
	struct ibv_qp_attr a = {0};
	a.qp_state = IBV_QPS_INIT; a.port_num = r->port; a.pkey_index = 0; a.qp_access_flags = 0;
	if (ibv_modify_qp(r->qp, &a, IBV_QP_STATE | IBV_QP_PKEY_INDEX | IBV_QP_PORT | IBV_QP_ACCESS_FLAGS)) {
		snprintf(err, errlen, "QP to INIT: %s", strerror(errno)); return -1;
	}
	for (int i = 0; i < r->nslots; i++) if (nc_post_recv(r, i)) { snprintf(err, errlen, "ibv_post_recv: %s", strerror(errno)); return -1; }
	memset(&a, 0, sizeof a);
	a.qp_state = IBV_QPS_RTR; a.path_mtu = IBV_MTU_1024; a.dest_qp_num = qpn; a.rq_psn = psn;
	a.max_dest_rd_atomic = 1; a.min_rnr_timer = 12;
	a.ah_attr.dlid = lid; a.ah_attr.port_num = r->port;
	if (lid == 0) { // RoCE: route by GID
		a.ah_attr.is_global = 1;
		memcpy(&a.ah_attr.grh.dgid, gid, 16);
		a.ah_attr.grh.hop_limit = 1; a.ah_attr.grh.sgid_index = 0;
	}
	if (ibv_modify_qp(r->qp, &a, IBV_QP_STATE | IBV_QP_AV | IBV_QP_PATH_MTU | IBV_QP_DEST_QPN |
			IBV_QP_RQ_PSN | IBV_QP_MAX_DEST_RD_ATOMIC | IBV_QP_MIN_RNR_TIMER)) {
		snprintf(err, errlen, "QP to RTR: %s", strerror(errno)); return -1;
	}
	memset(&a, 0, sizeof a);
	a.qp_state = IBV_QPS_RTS; a.timeout = 14; a.retry_cnt = 7; a.rnr_retry = 7; a.sq_psn = r->psn; a.max_rd_atomic = 1;
	if (ibv_modify_qp(r->qp, &a, IBV_QP_STATE | IBV_QP_TIMEOUT | IBV_QP_RETRY_CNT | IBV_QP_RNR_RETRY |
			IBV_QP_SQ_PSN | IBV_QP_MAX_QP_RD_ATOMIC)) {
		snprintf(err, errlen, "QP to RTS: %s", strerror(errno)); return -1;
	}
	return 0;
}

// nc_post_send copies len bytes into the send slot and posts one SEND.
static int nc_post_send(nc_rdma *r, const void *buf, int len) {
	memcpy(r->sbuf, buf, len);
	struct ibv_sge sge = { (uintptr_t)r->sbuf, (uint32_t)len, r->smr->lkey };
	struct ibv_send_wr wr = {0}, *bad;
	wr.sg_list = &sge; wr.num_sge = 1; wr.opcode = IBV_WR_SEND; wr.send_flags = IBV_SEND_SIGNALED;
	return ibv_post_send(r->qp, &wr, &bad);
}

// nc_poll polls one CQ once: 1 and the completion's slot/length, 0 when
// empty, -1 on a failed completion.
static int nc_poll(struct ibv_cq *cq, int *slot, int *len, int *status) {
	struct ibv_wc wc;
	int n = ibv_poll_cq(cq, 1, &wc);
	if (n <= 0) return n;
	*status = wc.status;
	if (wc.status != IBV_WC_SUCCESS) return -1;
	*slot = (int)wc.wr_id; *len = (int)wc.byte_len;
	return 1;
}

static void nc_close(nc_rdma *r) {
	if (r->qp) ibv_destroy_qp(r->qp);
	if (r->smr) ibv_dereg_mr(r->smr);
	if (r->rmr) ibv_dereg_mr(r->rmr);
	if (r->scq) ibv_destroy_cq(r->scq);
	if (r->rcq) ibv_destroy_cq(r->rcq);
	if (r->pd) ibv_dealloc_pd(r->pd);
	if (r->ctx) ibv_close_device(r->ctx);
	free(r->sbuf); free(r->rbuf);
	memset(r, 0, sizeof *r);
}
*/
import "C"

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
)

const (
	rdmaSlots    = 64
	rdmaSlotSize = 64 << 10
)

// rdmaConn is a conn over one RC queue pair. Untested on hardware: the
// build machines have no RDMA device, where Init fails cleanly.
type rdmaConn struct {
	r        *C.nc_rdma
	rdl, wdl atomic.Int64
	closed   atomic.Bool
	closeMu  sync.Mutex
	pending  []byte // rest of the last received message
	pendSlot int
}

func rdmaErr(op string, b []byte) error {
	return fmt.Errorf("netcoll: rdma: %s: %s", op, C.GoString((*C.char)(unsafe.Pointer(&b[0]))))
}

func (c *Comm) rdmaLinks(ctx context.Context) error {
	dl, _ := ctx.Deadline()
	for p := range c.size {
		if p == c.rank {
			continue
		}
		r := (*C.nc_rdma)(C.calloc(1, C.size_t(unsafe.Sizeof(C.nc_rdma{}))))
		errb := make([]byte, 256)
		if C.nc_open(r, rdmaSlots, rdmaSlotSize, (*C.char)(unsafe.Pointer(&errb[0])), C.int(len(errb))) != 0 {
			C.nc_close(r)
			C.free(unsafe.Pointer(r))
			return fmt.Errorf("netcoll: rank %d: rdma transport: %w", c.rank, rdmaErr("open", errb))
		}
		// Exchange queue-pair addresses over the TCP connection.
		gid := C.GoBytes(unsafe.Pointer(&r.gid), 16)
		mine := enc(nil).u32(uint32(r.qp.qp_num)).u32(uint32(r.lid)).u32(uint32(r.psn)).bytes(gid)
		cn := c.links[p].conns[0]
		if err := sendMsg(cn, mine, dl); err != nil {
			return fmt.Errorf("netcoll: rank %d: rdma setup with rank %d: %w", c.rank, p, err)
		}
		b, err := recvMsg(cn, dl)
		if err != nil {
			return fmt.Errorf("netcoll: rank %d: rdma setup with rank %d: %w", c.rank, p, err)
		}
		d := dec{b: b}
		qpn, lid, psn, pgid := d.u32(), d.u32(), d.u32(), d.bytes()
		if d.err != nil || len(pgid) != 16 {
			return fmt.Errorf("netcoll: rank %d: rdma setup with rank %d: bad address message", c.rank, p)
		}
		if C.nc_connect(r, C.uint32_t(qpn), C.uint16_t(lid), (*C.uint8_t)(unsafe.Pointer(&pgid[0])), C.uint32_t(psn),
			(*C.char)(unsafe.Pointer(&errb[0])), C.int(len(errb))) != 0 {
			return fmt.Errorf("netcoll: rank %d: rdma transport to rank %d: %w", c.rank, p, rdmaErr("connect", errb))
		}
		l := c.links[p]
		l.idle = append(l.idle, l.conns...)
		l.conns = []conn{&rdmaConn{r: r, pendSlot: -1}}
		l.kind = "rdma"
	}
	return nil
}

func (c *rdmaConn) SetReadDeadline(t time.Time) error  { c.rdl.Store(deadlineNanos(t)); return nil }
func (c *rdmaConn) SetWriteDeadline(t time.Time) error { c.wdl.Store(deadlineNanos(t)); return nil }

func (c *rdmaConn) Close() error {
	c.closed.Store(true) // resources are released at process exit: workers may be polling
	return nil
}

func (c *rdmaConn) expired(dl *atomic.Int64) error {
	if c.closed.Load() {
		return os.ErrClosed
	}
	if t := dl.Load(); t != 0 && t < time.Now().UnixNano() {
		return os.ErrDeadlineExceeded
	}
	return nil
}

func (c *rdmaConn) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		n := min(len(p), rdmaSlotSize)
		if C.nc_post_send(c.r, unsafe.Pointer(&p[0]), C.int(n)) != 0 {
			return written, fmt.Errorf("netcoll: rdma: ibv_post_send failed")
		}
		var slot, ln, status C.int
		for {
			rc := C.nc_poll(c.r.scq, &slot, &ln, &status)
			if rc == 1 {
				break
			}
			if rc < 0 {
				return written, fmt.Errorf("netcoll: rdma: send completion status %d", int(status))
			}
			if err := c.expired(&c.wdl); err != nil {
				return written, err
			}
			runtime.Gosched()
		}
		p, written = p[n:], written+n
	}
	return written, nil
}

func (c *rdmaConn) Read(p []byte) (int, error) {
	for len(c.pending) == 0 {
		if c.pendSlot >= 0 {
			if C.nc_post_recv(c.r, C.int(c.pendSlot)) != 0 {
				return 0, fmt.Errorf("netcoll: rdma: ibv_post_recv failed")
			}
			c.pendSlot = -1
		}
		var slot, ln, status C.int
		rc := C.nc_poll(c.r.rcq, &slot, &ln, &status)
		if rc < 0 {
			return 0, fmt.Errorf("netcoll: rdma: receive completion status %d", int(status))
		}
		if rc == 0 {
			if err := c.expired(&c.rdl); err != nil {
				return 0, err
			}
			runtime.Gosched()
			continue
		}
		base := unsafe.Add(unsafe.Pointer(c.r.rbuf), int(slot)*rdmaSlotSize)
		c.pending = unsafe.Slice((*byte)(base), int(ln))
		c.pendSlot = int(slot)
	}
	n := copy(p, c.pending)
	c.pending = c.pending[n:]
	return n, nil
}
