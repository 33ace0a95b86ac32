package rpcclient

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"time"

	"golang.org/x/net/http2/hpack"
)

// HTTP/2 (RFC 9113) as much as a gRPC client needs.

const clientPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// Frame types.
const (
	frameData         = 0x0
	frameHeaders      = 0x1
	frameRSTStream    = 0x3
	frameSettings     = 0x4
	framePushPromise  = 0x5
	framePing         = 0x6
	frameGoAway       = 0x7
	frameWindowUpdate = 0x8
	frameContinuation = 0x9
)

// Frame flags.
const (
	flagEndStream  = 0x1
	flagAck        = 0x1
	flagEndHeaders = 0x4
	flagPadded     = 0x8
	flagPriority   = 0x20
)

// Settings.
const (
	settingEnablePush        = 0x2
	settingInitialWindowSize = 0x4
	settingMaxFrameSize      = 0x5
)

const (
	// defaultWindow and defaultMaxFrame are HTTP/2's until the server's
	// SETTINGS say otherwise.
	defaultWindow   = 65535
	defaultMaxFrame = 16384
	// streamWindow is how much of one response the server may send ahead
	// of what the caller has read; connWindow the same for the connection.
	// Large, so that a listing of tens of MB is not paced by round trips.
	streamWindow = 16 << 20
	connWindow   = 1 << 30
	// maxReadFrame bounds a frame the server sends; we never raise
	// SETTINGS_MAX_FRAME_SIZE above the default.
	maxReadFrame = defaultMaxFrame
	// rstCancel is RST_STREAM's CANCEL error code.
	rstCancel = 0x8
)

// errConnClosed is a transport that may not start streams any more (it
// failed, was closed, or the server sent GOAWAY); Conn dials a new one.
var errConnClosed = errors.New("rpcclient: connection closed")

// transport is one HTTP/2 connection to a server. A goroutine reads its
// frames (readLoop) until the connection fails or Close closes it.
type transport struct {
	conn   net.Conn
	scheme string // "http" or "https"
	host   string // :authority

	// wmu serialises frame writes and the hpack encoder, and orders new
	// streams' HEADERS by id as HTTP/2 requires.
	wmu  sync.Mutex
	bw   *bufio.Writer
	hbuf bytes.Buffer
	enc  *hpack.Encoder

	// mu guards what follows; cond is broadcast on every change a stream
	// may wait for (data, trailers, window, failure).
	mu         sync.Mutex
	cond       *sync.Cond
	streams    map[uint32]*stream
	nextID     uint32
	sendWindow int64 // connection-level credit to send DATA
	peerWindow int64 // the server's SETTINGS_INITIAL_WINDOW_SIZE
	peerFrame  int   // the server's SETTINGS_MAX_FRAME_SIZE
	goAway     bool
	err        error // why the connection failed; no stream may start
	connAcked  int   // received DATA bytes not yet credited back

	done chan struct{} // closed when readLoop returns
}

// stream is one call on a transport. Fields are guarded by t.mu.
type stream struct {
	t          *transport
	id         uint32
	sendWindow int64
	deadline   time.Time // the call's, if it has one

	gotHeaders bool
	buf        [][]byte // received message bytes not yet read
	unacked    int      // bytes read and not yet credited back
	ended      bool     // END_STREAM seen
	status     *Error   // the trailers' status when not OK
	err        error    // the stream failed: reset, cancelled, connection lost
}

// newTransport starts HTTP/2 on conn, already connected (and TLS set up).
func newTransport(conn net.Conn, scheme, host string) (*transport, error) {
	t := &transport{conn: conn, scheme: scheme, host: host, bw: bufio.NewWriterSize(conn, 32<<10),
		streams: map[uint32]*stream{}, nextID: 1, sendWindow: defaultWindow, peerWindow: defaultWindow,
		peerFrame: defaultMaxFrame, done: make(chan struct{})}
	t.cond = sync.NewCond(&t.mu)
	t.enc = hpack.NewEncoder(&t.hbuf)
	t.bw.WriteString(clientPreface)
	settings := make([]byte, 0, 12)
	settings = appendSetting(settings, settingEnablePush, 0)
	settings = appendSetting(settings, settingInitialWindowSize, streamWindow)
	t.writeFrame(frameSettings, 0, 0, settings)
	t.writeFrame(frameWindowUpdate, 0, 0, binary.BigEndian.AppendUint32(nil, connWindow-defaultWindow))
	if err := t.bw.Flush(); err != nil {
		conn.Close()
		return nil, err
	}
	go t.readLoop()
	return t, nil
}

func appendSetting(b []byte, id uint16, v uint32) []byte {
	return binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint16(b, id), v)
}

// writeFrame buffers one frame; the caller holds wmu (or owns t alone) and
// flushes.
func (t *transport) writeFrame(typ, flags byte, id uint32, payload []byte) error {
	var h [9]byte
	h[0], h[1], h[2] = byte(len(payload)>>16), byte(len(payload)>>8), byte(len(payload))
	h[3], h[4] = typ, flags
	binary.BigEndian.PutUint32(h[5:], id&0x7fffffff)
	if _, err := t.bw.Write(h[:]); err != nil {
		return err
	}
	_, err := t.bw.Write(payload)
	return err
}

// send writes one frame and flushes it.
func (t *transport) send(typ, flags byte, id uint32, payload []byte) error {
	t.wmu.Lock()
	defer t.wmu.Unlock()
	if err := t.writeFrame(typ, flags, id, payload); err != nil {
		return err
	}
	return t.bw.Flush()
}

// usable reports whether new streams may start on t.
func (t *transport) usable() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.err == nil && !t.goAway
}

// open starts a stream: HEADERS with the request's header fields, END_STREAM
// unless the caller will send messages (always, for gRPC).
func (t *transport) open(fields []hpack.HeaderField, deadline time.Time) (*stream, error) {
	t.wmu.Lock()
	defer t.wmu.Unlock()
	t.mu.Lock()
	if t.err != nil || t.goAway || t.nextID > 1<<31-1 {
		t.mu.Unlock()
		return nil, errConnClosed
	}
	s := &stream{t: t, id: t.nextID, sendWindow: t.peerWindow, deadline: deadline}
	t.nextID += 2
	t.streams[s.id] = s
	frame := t.peerFrame
	t.mu.Unlock()

	t.hbuf.Reset()
	for _, f := range fields {
		t.enc.WriteField(f)
	}
	block := t.hbuf.Bytes()
	typ := byte(frameHeaders)
	for first := true; first || len(block) > 0; first = false {
		n := min(len(block), frame)
		var flags byte
		if n == len(block) {
			flags = flagEndHeaders
		}
		if err := t.writeFrame(typ, flags, s.id, block[:n]); err != nil {
			return nil, t.fail(err)
		}
		block, typ = block[n:], frameContinuation
	}
	if err := t.bw.Flush(); err != nil {
		return nil, t.fail(err)
	}
	return s, nil
}

// fail ends t after an I/O error: every stream fails with Unavailable and
// no new one starts. It returns the status streams got.
func (t *transport) fail(err error) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.err == nil {
		t.err = errorf(Unavailable, "error reading from server: "+err.Error())
		t.conn.Close()
		for id, s := range t.streams {
			if s.err == nil && !s.ended {
				s.err = t.err
			}
			delete(t.streams, id)
		}
		t.cond.Broadcast()
	}
	return t.err
}

// close closes the connection; the read loop ends.
func (t *transport) close() {
	t.fail(net.ErrClosed)
	<-t.done
}

// writeData sends p as DATA frames within the flow-control windows,
// END_STREAM on the last when end. It waits for window until the stream
// fails (a cancelled context resets it). A stream the server has already
// ended returns io.EOF: its status is for the caller to read.
func (s *stream) writeData(p []byte, end bool) error {
	t := s.t
	for first := true; first || len(p) > 0; first = false {
		t.mu.Lock()
		for len(p) > 0 && (t.sendWindow <= 0 || s.sendWindow <= 0) && s.err == nil && t.err == nil && !s.ended {
			t.cond.Wait()
		}
		if err := s.failure(); err != nil {
			t.mu.Unlock()
			return err
		}
		if s.ended {
			t.mu.Unlock()
			return io.EOF
		}
		n := int(min(int64(len(p)), t.sendWindow, s.sendWindow, int64(t.peerFrame)))
		t.sendWindow -= int64(n)
		s.sendWindow -= int64(n)
		t.mu.Unlock()
		var flags byte
		if end && n == len(p) {
			flags = flagEndStream
		}
		if err := t.send(frameData, flags, s.id, p[:n]); err != nil {
			return t.fail(err)
		}
		p = p[n:]
	}
	return nil
}

// failure is why s can no longer send: its own error or the
// connection's. The caller holds t.mu.
func (s *stream) failure() error {
	if s.err != nil {
		return s.err
	}
	return s.t.err
}

// read fills p from the stream's received data, waiting for it. At the
// end of the stream it returns io.EOF, or the status when not OK.
func (s *stream) read(p []byte) error {
	for len(p) > 0 {
		n, credit, err := s.take(p)
		if credit > 0 {
			if err := s.t.send(frameWindowUpdate, 0, s.id, binary.BigEndian.AppendUint32(nil, uint32(credit))); err != nil {
				s.t.fail(err)
			}
		}
		if err != nil {
			return err
		}
		p = p[n:]
	}
	return nil
}

// take is read under t.mu: it waits for data, copies what there is into
// p and returns how much, and the stream window to credit back once a
// quarter of it has been read. The caller sends the credit after t.mu is
// released (open takes wmu before t.mu), and before it waits for more:
// a message larger than the window needs credit to arrive at all.
func (s *stream) take(p []byte) (n, credit int, err error) {
	t := s.t
	t.mu.Lock()
	defer t.mu.Unlock()
	for len(s.buf) == 0 && s.err == nil && !s.ended {
		t.cond.Wait()
	}
	if s.err != nil {
		return 0, 0, s.err
	}
	if len(s.buf) == 0 {
		if s.status != nil {
			return 0, 0, s.status
		}
		return 0, 0, io.EOF
	}
	for n < len(p) && len(s.buf) > 0 {
		c := copy(p[n:], s.buf[0])
		n += c
		if s.buf[0] = s.buf[0][c:]; len(s.buf[0]) == 0 {
			s.buf = s.buf[1:]
		}
	}
	s.unacked += n
	if s.unacked >= streamWindow/4 && !s.ended {
		credit, s.unacked = s.unacked, 0
	}
	return n, credit, nil
}

// cancel ends s from this side: the server gets RST_STREAM(CANCEL) unless
// the stream has ended already.
func (s *stream) cancel(err error) {
	t := s.t
	t.mu.Lock()
	live := s.err == nil && !s.ended
	if live {
		s.err = err
		delete(t.streams, s.id)
		t.cond.Broadcast()
	}
	t.mu.Unlock()
	if live {
		t.send(frameRSTStream, 0, s.id, binary.BigEndian.AppendUint32(nil, rstCancel))
	}
}

// readLoop reads frames until the connection fails.
func (t *transport) readLoop() {
	defer close(t.done)
	br := bufio.NewReaderSize(t.conn, 64<<10)
	dec := hpack.NewDecoder(4096, nil)
	var hdr [9]byte
	payload := make([]byte, maxReadFrame)
	var block []byte // a header block awaiting CONTINUATION
	var blockID uint32
	var blockFlags byte
	for {
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			t.fail(err)
			return
		}
		n := int(hdr[0])<<16 | int(hdr[1])<<8 | int(hdr[2])
		typ, flags, id := hdr[3], hdr[4], binary.BigEndian.Uint32(hdr[5:])&0x7fffffff
		if n > maxReadFrame {
			t.fail(fmt.Errorf("frame of %d bytes exceeds the maximum %d", n, maxReadFrame))
			return
		}
		p := payload[:n]
		if _, err := io.ReadFull(br, p); err != nil {
			t.fail(err)
			return
		}
		if block != nil && typ != frameContinuation {
			t.fail(errors.New("protocol error: header block not continued"))
			return
		}
		var err error
		switch typ {
		case frameData:
			err = t.onData(id, flags, p)
		case frameHeaders:
			if p, err = unpad(flags, p); err != nil {
				break
			}
			if flags&flagPriority != 0 {
				if len(p) < 5 {
					err = errors.New("protocol error: short HEADERS")
					break
				}
				p = p[5:]
			}
			block, blockID, blockFlags = append([]byte(nil), p...), id, flags
			if flags&flagEndHeaders != 0 {
				err = t.onHeaders(dec, blockID, blockFlags, block)
				block = nil
			}
		case frameContinuation:
			if block == nil || id != blockID {
				err = errors.New("protocol error: unexpected CONTINUATION")
				break
			}
			block = append(block, p...)
			if flags&flagEndHeaders != 0 {
				err = t.onHeaders(dec, blockID, blockFlags, block)
				block = nil
			}
		case frameRSTStream:
			if len(p) != 4 {
				err = errors.New("protocol error: RST_STREAM of wrong size")
				break
			}
			t.onReset(id, binary.BigEndian.Uint32(p))
		case frameSettings:
			err = t.onSettings(flags, p)
		case framePing:
			if len(p) != 8 {
				err = errors.New("protocol error: PING of wrong size")
			} else if flags&flagAck == 0 {
				err = t.send(framePing, flagAck, 0, p)
			}
		case frameGoAway:
			if len(p) < 8 {
				err = errors.New("protocol error: short GOAWAY")
				break
			}
			t.onGoAway(binary.BigEndian.Uint32(p)&0x7fffffff, binary.BigEndian.Uint32(p[4:]), p[8:])
		case frameWindowUpdate:
			if len(p) != 4 {
				err = errors.New("protocol error: WINDOW_UPDATE of wrong size")
				break
			}
			t.onWindowUpdate(id, int64(binary.BigEndian.Uint32(p)&0x7fffffff))
		case framePushPromise:
			err = errors.New("protocol error: PUSH_PROMISE, which this client disabled")
		}
		if err != nil {
			t.fail(err)
			return
		}
	}
}

// unpad strips a padded frame's padding.
func unpad(flags byte, p []byte) ([]byte, error) {
	if flags&flagPadded == 0 {
		return p, nil
	}
	if len(p) < 1 || int(p[0]) > len(p)-1 {
		return nil, errors.New("protocol error: bad padding")
	}
	return p[1 : len(p)-int(p[0])], nil
}

func (t *transport) onData(id uint32, flags byte, p []byte) error {
	size := len(p) // padding counts against the windows too
	p, err := unpad(flags, p)
	if err != nil {
		return err
	}
	t.mu.Lock()
	t.connAcked += size
	credit := 0
	if t.connAcked >= connWindow/4 {
		credit, t.connAcked = t.connAcked, 0
	}
	if s := t.streams[id]; s != nil {
		if len(p) > 0 {
			s.buf = append(s.buf, append([]byte(nil), p...))
		}
		// Padding is never read; credit it back at once.
		s.unacked += size - len(p)
		if flags&flagEndStream != 0 {
			// END_STREAM without trailers: the server broke off.
			s.ended = true
			s.status = errorf(Internal, "server closed the stream without sending trailers")
			delete(t.streams, id)
		}
		t.cond.Broadcast()
	}
	t.mu.Unlock()
	if credit > 0 {
		return t.send(frameWindowUpdate, 0, 0, binary.BigEndian.AppendUint32(nil, uint32(credit)))
	}
	return nil
}

// onHeaders handles a stream's response headers or trailers. Decoding
// happens for every block, known stream or not: hpack's table is the
// connection's.
func (t *transport) onHeaders(dec *hpack.Decoder, id uint32, flags byte, block []byte) error {
	fields, err := dec.DecodeFull(block)
	if err != nil {
		return fmt.Errorf("protocol error: headers: %w", err)
	}
	t.mu.Lock()
	s := t.streams[id]
	if s == nil {
		t.mu.Unlock()
		return nil
	}
	end := flags&flagEndStream != 0
	httpStatus, grpcStatus, grpcMessage, haveGRPCStatus := 0, 0, "", false
	for _, f := range fields {
		switch f.Name {
		case ":status":
			httpStatus, _ = strconv.Atoi(f.Value)
		case "grpc-status":
			grpcStatus, err = strconv.Atoi(f.Value)
			haveGRPCStatus = err == nil
		case "grpc-message":
			grpcMessage = decodeMessage(f.Value)
		}
	}
	first := !s.gotHeaders
	s.gotHeaders = true
	switch {
	case haveGRPCStatus && (end || first):
		if grpcStatus != int(OK) {
			s.status = errorf(Code(grpcStatus), grpcMessage)
		}
	case first && httpStatus != 200:
		s.status = errorf(httpStatusCode(httpStatus), fmt.Sprintf("unexpected HTTP status %d from the server", httpStatus))
		end = true
	case end:
		s.status = errorf(Internal, "server closed the stream without a grpc-status")
	}
	if !end {
		t.mu.Unlock()
		return nil
	}
	s.ended = true
	delete(t.streams, id)
	t.cond.Broadcast()
	t.mu.Unlock()
	if flags&flagEndStream == 0 {
		// A non-gRPC answer with a body: tell the server it will not be read.
		return t.send(frameRSTStream, 0, id, binary.BigEndian.AppendUint32(nil, rstCancel))
	}
	return nil
}

func (t *transport) onReset(id, code uint32) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if s := t.streams[id]; s != nil {
		c := rstStreamCode(code)
		if c == Canceled && !s.deadline.IsZero() && !time.Now().Before(s.deadline) {
			// The server gave up because our deadline (grpc-timeout) passed.
			c = DeadlineExceeded
		}
		s.err = errorf(c, fmt.Sprintf("stream terminated by RST_STREAM with error code: %d", code))
		delete(t.streams, id)
		t.cond.Broadcast()
	}
}

func (t *transport) onSettings(flags byte, p []byte) error {
	if flags&flagAck != 0 {
		return nil
	}
	if len(p)%6 != 0 {
		return errors.New("protocol error: SETTINGS of wrong size")
	}
	t.mu.Lock()
	for ; len(p) > 0; p = p[6:] {
		v := binary.BigEndian.Uint32(p[2:])
		switch binary.BigEndian.Uint16(p) {
		case settingInitialWindowSize:
			delta := int64(v) - t.peerWindow
			t.peerWindow = int64(v)
			for _, s := range t.streams {
				s.sendWindow += delta
			}
		case settingMaxFrameSize:
			t.peerFrame = int(v)
		}
	}
	t.cond.Broadcast()
	t.mu.Unlock()
	return t.send(frameSettings, flagAck, 0, nil)
}

// onGoAway: the server takes no new streams; those it did not start fail
// with Unavailable (safe to retry), the others run to their end.
func (t *transport) onGoAway(last, code uint32, debug []byte) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.goAway = true
	for id, s := range t.streams {
		if id > last {
			s.err = errorf(Unavailable, fmt.Sprintf("the server is going away (GOAWAY code %d %q)", code, debug))
			delete(t.streams, id)
		}
	}
	t.cond.Broadcast()
}

func (t *transport) onWindowUpdate(id uint32, inc int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if id == 0 {
		t.sendWindow += inc
	} else if s := t.streams[id]; s != nil {
		s.sendWindow += inc
	}
	t.cond.Broadcast()
}
