package netcoll

import (
	"encoding/binary"
	"fmt"
	"io"
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
	if n < 1 || n > maxFrame {
		return frame{}, fmt.Errorf("netcoll: store: bad frame length %d", n)
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
func (d *dec) bytes() []byte {
	n := d.u32()
	if n > maxFrame {
		d.err = fmt.Errorf("netcoll: store: bad length %d", n)
		return nil
	}
	return d.take(int(n))
}
func (d *dec) str() string { return string(d.bytes()) }
