package netcoll

import (
	"encoding/binary"
	"fmt"
	"io"
	"time"
)

// Store frames: u32 big-endian length of (type byte + payload), type, payload.
const (
	msgHello = 'H' // epoch u64, rank u32, world u32
	msgOK    = 'O' // session u64 (reply to hello) or empty
	msgErr   = 'E' // reason
	msgSet   = 'S' // key, value
	msgGet   = 'G' // key
	msgValue = 'V' // value
	msgFail  = 'F' // peer i32, cause: a rank reports a failed transfer
	msgBye   = 'B' // graceful close
	msgAbort = 'A' // peer i32, reason: the store's verdict, pushed to all

	maxFrame = 1 << 20
	// maxStoreBytes bounds all keys and values the rendezvous store holds
	// (rendezvous exchanges addresses, a few bytes per rank): a rank that
	// sets more is declared failed.
	maxStoreBytes = 64 << 20
)

type frame struct {
	typ byte
	b   []byte
}

func writeFrame(w io.Writer, typ byte, payload []byte) error {
	buf := make([]byte, 5+len(payload))
	binary.BigEndian.PutUint32(buf, uint32(1+len(payload)))
	buf[4] = typ
	copy(buf[5:], payload)
	_, err := w.Write(buf)
	return err
}

func readFrame(r io.Reader) (frame, error) {
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return frame{}, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n < 1 || n > maxFrame { // before the allocation it sizes
		return frame{}, fmt.Errorf("netcoll: store: bad frame length %d (want 1 to %d)", n, maxFrame)
	}
	b := make([]byte, n-1)
	if _, err := io.ReadFull(r, b); err != nil {
		return frame{}, err
	}
	return frame{typ: hdr[4], b: b}, nil
}

// enc builds payloads.
type enc []byte

func (e enc) u32(v uint32) enc { return binary.BigEndian.AppendUint32(e, v) }
func (e enc) u64(v uint64) enc { return binary.BigEndian.AppendUint64(e, v) }
func (e enc) str(s string) enc { return append(e.u32(uint32(len(s))), s...) }
func (e enc) bytes(b []byte) enc {
	return append(e.u32(uint32(len(b))), b...)
}

// dec reads payloads; the first short read sets err.
type dec struct {
	b   []byte
	err error
}

// take returns the next n bytes. On a short message it sets err and
// returns zeros; n is a fixed field size (4 or 8), never a length read
// from the wire.
func (d *dec) take(n int) []byte {
	if d.err != nil || len(d.b) < n {
		if d.err == nil {
			d.err = fmt.Errorf("netcoll: store: short message")
		}
		return make([]byte, n)
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}
func (d *dec) u32() uint32 { return binary.BigEndian.Uint32(d.take(4)) }
func (d *dec) u64() uint64 { return binary.BigEndian.Uint64(d.take(8)) }

// bytes reads a length-prefixed field. The length is checked against what
// the message still holds before anything is taken, and the field is a
// slice of the message: a length read from the wire never sizes an
// allocation.
func (d *dec) bytes() []byte {
	n := d.u32()
	if d.err != nil {
		return nil
	}
	if uint64(n) > uint64(len(d.b)) {
		d.err = fmt.Errorf("netcoll: store: field length %d exceeds the %d bytes left in the message", n, len(d.b))
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}
func (d *dec) str() string { return string(d.bytes()) }

// Setup messages, exchanged over a link's first TCP connection (already
// authenticated) to set up shared memory or RDMA: u32 big-endian length,
// then the message.
const maxSetupMsg = 1 << 16

func sendMsg(cn conn, b []byte, dl time.Time) error {
	cn.SetWriteDeadline(dl)
	defer cn.SetWriteDeadline(time.Time{})
	var h [4]byte
	binary.BigEndian.PutUint32(h[:], uint32(len(b)))
	if _, err := cn.Write(append(h[:], b...)); err != nil {
		return err
	}
	return nil
}

func recvMsg(cn conn, dl time.Time) ([]byte, error) {
	cn.SetReadDeadline(dl)
	defer cn.SetReadDeadline(time.Time{})
	var h [4]byte
	if _, err := io.ReadFull(cn, h[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(h[:])
	if n == 0 || n > maxSetupMsg { // before the allocation it sizes
		return nil, fmt.Errorf("netcoll: bad setup message length %d (want 1 to %d)", n, maxSetupMsg)
	}
	b := make([]byte, n)
	_, err := io.ReadFull(cn, b)
	return b, err
}
