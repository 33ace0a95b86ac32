package rpcclient

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/http2/hpack"
	"google.golang.org/protobuf/proto"
)

// Options are how a Conn reaches its server and what it adds to calls.
type Options struct {
	// TLS, when set, secures TCP connections; NextProtos is replaced by
	// "h2", which the server must choose. Unset, TCP is plaintext HTTP/2
	// (h2c with prior knowledge). Unix sockets never use TLS.
	TLS *tls.Config
	// Metadata, when set, returns header fields to send with a call of the
	// full method ("/loom.v1.JobService/Submit"), such as a credential
	// bound to that method. Names are lower case.
	Metadata func(ctx context.Context, method string) (map[string]string, error)
	// MaxSendBytes and MaxRecvBytes bound one message; 0 is no bound.
	MaxSendBytes, MaxRecvBytes int
}

// Conn is a client of one server address: "unix:///PATH" (or unix:PATH),
// or HOST:PORT. It connects at the first call and again after the
// connection fails or the server sends GOAWAY. A Conn may be used by
// several goroutines; calls share one HTTP/2 connection.
type Conn struct {
	network, address, authority string
	opts                        Options

	mu sync.Mutex
	t  *transport
}

// New returns a Conn for addr. It does not connect.
func New(addr string, opts Options) (*Conn, error) {
	c := &Conn{opts: opts}
	switch {
	case strings.HasPrefix(addr, "unix://"):
		c.network, c.address, c.authority = "unix", strings.TrimPrefix(addr, "unix://"), "localhost"
	case strings.HasPrefix(addr, "unix:"):
		c.network, c.address, c.authority = "unix", strings.TrimPrefix(addr, "unix:"), "localhost"
	default:
		a := strings.TrimPrefix(addr, "dns:///")
		if _, _, err := net.SplitHostPort(a); err != nil {
			return nil, fmt.Errorf("rpcclient: address %q: want HOST:PORT or unix:///PATH: %w", addr, err)
		}
		c.network, c.address, c.authority = "tcp", a, a
	}
	if c.network == "unix" && c.address == "" {
		return nil, fmt.Errorf("rpcclient: address %q names no socket", addr)
	}
	return c, nil
}

// Close closes the connection, failing calls in flight.
func (c *Conn) Close() error {
	c.mu.Lock()
	t := c.t
	c.t = nil
	c.mu.Unlock()
	if t != nil {
		t.close()
	}
	return nil
}

// transport returns a usable connection, connecting when there is none.
// A failed connection is an Unavailable error whose message starts with
// "connection error: ".
func (c *Conn) transport(ctx context.Context) (*transport, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.t != nil && c.t.usable() {
		return c.t, nil
	}
	if c.t != nil {
		// Streams still running on a connection that got GOAWAY finish
		// there; it closes when the server closes it.
		c.t = nil
	}
	t, err := c.dial(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil, contextError(ctx.Err())
		}
		return nil, errorf(Unavailable, "connection error: "+err.Error())
	}
	c.t = t
	return t, nil
}

func (c *Conn) dial(ctx context.Context) (*transport, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, c.network, c.address)
	if err != nil {
		return nil, err
	}
	scheme := "http"
	if c.network == "tcp" && c.opts.TLS != nil {
		cfg := c.opts.TLS.Clone()
		cfg.NextProtos = []string{"h2"}
		tc := tls.Client(conn, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			conn.Close()
			return nil, fmt.Errorf("TLS handshake with %s: %w", c.address, err)
		}
		if p := tc.ConnectionState().NegotiatedProtocol; p != "h2" {
			tc.Close()
			return nil, fmt.Errorf("TLS to %s: the server chose protocol %q, not h2 (ALPN)", c.address, p)
		}
		conn, scheme = tc, "https"
	}
	t, err := newTransport(conn, scheme, c.authority)
	if err != nil {
		return nil, fmt.Errorf("HTTP/2 preface to %s: %w", c.address, err)
	}
	return t, nil
}

// Invoke calls the unary method with req and fills resp with the answer.
func (c *Conn) Invoke(ctx context.Context, method string, req, resp proto.Message) error {
	s, err := c.NewStream(ctx, method)
	if err != nil {
		return err
	}
	defer s.stop()
	if err := s.send(req, true); err != nil && err != io.EOF {
		return s.finalErr(err)
	}
	if err := s.RecvMsg(resp); err != nil {
		if err == io.EOF {
			return errorf(Internal, "server closed the stream without sending a message")
		}
		return err
	}
	// The trailers carry the status; a second message is a protocol error.
	var prefix [5]byte
	switch err := s.s.read(prefix[:]); err {
	case io.EOF:
		return nil
	case nil:
		s.s.cancel(errorf(Internal, "unary call answered with more than one message"))
		return errorf(Internal, "unary call answered with more than one message")
	default:
		return err
	}
}

// Stream is one call that sends or receives several messages: send with
// SendMsg and CloseSend, receive with RecvMsg until io.EOF. The call ends
// when RecvMsg returns an error or the context ends.
type Stream struct {
	c      *Conn
	s      *stream
	stop   func() bool
	closed bool // CloseSend called
}

// NewStream starts a call of method.
func (c *Conn) NewStream(ctx context.Context, method string) (*Stream, error) {
	if err := ctx.Err(); err != nil {
		return nil, contextError(err)
	}
	fields := []hpack.HeaderField{{Name: ":method", Value: "POST"}, {Name: ":scheme"}, {Name: ":path", Value: method},
		{Name: ":authority", Value: c.authority}, {Name: "content-type", Value: "application/grpc"},
		{Name: "user-agent", Value: "loom-rpcclient"}, {Name: "te", Value: "trailers"}}
	if dl, ok := ctx.Deadline(); ok {
		left := time.Until(dl)
		if left <= 0 {
			return nil, contextError(context.DeadlineExceeded)
		}
		fields = append(fields, hpack.HeaderField{Name: "grpc-timeout", Value: encodeTimeout(left)})
	}
	if c.opts.Metadata != nil {
		md, err := c.opts.Metadata(ctx, method)
		if err != nil {
			// As grpc-go says of per-RPC credentials: the call cannot
			// prove who makes it, and no other server would do better.
			return nil, errorf(Unauthenticated, "transport: per-RPC creds failed due to error: "+err.Error())
		}
		for k, v := range md {
			fields = append(fields, hpack.HeaderField{Name: strings.ToLower(k), Value: v, Sensitive: true})
		}
	}
	for try := 0; ; try++ {
		t, err := c.transport(ctx)
		if err != nil {
			return nil, err
		}
		fields[1].Value = t.scheme
		dl, _ := ctx.Deadline()
		s, err := t.open(fields, dl)
		if errors.Is(err, errConnClosed) && try == 0 {
			continue // GOAWAY or failure since transport() looked: dial again once
		}
		if err != nil {
			return nil, errorf(Unavailable, "connection error: "+err.Error())
		}
		st := &Stream{c: c, s: s}
		st.stop = context.AfterFunc(ctx, func() { s.cancel(contextError(ctx.Err())) })
		return st, nil
	}
}

// encodeTimeout is grpc-timeout's value for d: at most 8 digits, in the
// finest unit that fits, rounded up.
func encodeTimeout(d time.Duration) string {
	for _, u := range []struct {
		unit time.Duration
		sym  string
	}{{time.Microsecond, "u"}, {time.Millisecond, "m"}, {time.Second, "S"}, {time.Minute, "M"}} {
		if n := (d + u.unit - 1) / u.unit; n < 1e8 {
			return strconv.FormatInt(int64(n), 10) + u.sym
		}
	}
	return strconv.FormatInt(int64((d+time.Hour-1)/time.Hour), 10) + "H"
}

// SendMsg sends m.
func (s *Stream) SendMsg(m proto.Message) error {
	if s.closed {
		return errors.New("rpcclient: SendMsg after CloseSend")
	}
	return s.finalErr(s.send(m, false))
}

// CloseSend tells the server no more messages come.
func (s *Stream) CloseSend() error {
	if s.closed {
		return nil
	}
	s.closed = true
	return s.finalErr(s.s.writeData(nil, true))
}

func (s *Stream) send(m proto.Message, end bool) error {
	b, err := proto.MarshalOptions{}.MarshalAppend(make([]byte, 5, 5+proto.Size(m)), m)
	if err != nil {
		return errorf(Internal, "marshal request: "+err.Error())
	}
	n := len(b) - 5
	if max := s.c.opts.MaxSendBytes; max > 0 && n > max {
		s.s.cancel(errorf(ResourceExhausted, "message too large"))
		return errorf(ResourceExhausted, fmt.Sprintf("trying to send message larger than max (%d vs. %d)", n, max))
	}
	binary.BigEndian.PutUint32(b[1:5], uint32(n))
	s.closed = s.closed || end
	return s.s.writeData(b, end)
}

// finalErr is what a failed send returns: the stream's own status when it
// has one (the server answered and closed), which explains more than a
// write that could not happen.
func (s *Stream) finalErr(err error) error {
	if err == nil || err == io.EOF {
		return err
	}
	t := s.s.t
	t.mu.Lock()
	defer t.mu.Unlock()
	if s.s.status != nil {
		return s.s.status
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return contextError(err)
	}
	return err
}

// RecvMsg receives the next message into m. At the end of the call it
// returns io.EOF when the status is OK, else the status as an *Error.
func (s *Stream) RecvMsg(m proto.Message) error {
	err := s.recv(m)
	if err != nil {
		s.stop()
	}
	return err
}

func (s *Stream) recv(m proto.Message) error {
	var prefix [5]byte
	if err := s.s.read(prefix[:]); err != nil {
		return err
	}
	if prefix[0] != 0 {
		s.s.cancel(errorf(Internal, "compressed message"))
		return errorf(Internal, "the server sent a compressed message; this client asks for none")
	}
	n := int(binary.BigEndian.Uint32(prefix[1:]))
	if max := s.c.opts.MaxRecvBytes; max > 0 && n > max {
		s.s.cancel(errorf(ResourceExhausted, "message too large"))
		return errorf(ResourceExhausted, fmt.Sprintf("received message larger than max (%d vs. %d)", n, max))
	}
	b := make([]byte, n)
	if err := s.s.read(b); err != nil {
		if err == io.EOF {
			return errorf(Internal, "the stream ended inside a message")
		}
		return err
	}
	if err := proto.Unmarshal(b, m); err != nil {
		s.s.cancel(errorf(Internal, "bad message"))
		return errorf(Internal, "unmarshal response: "+err.Error())
	}
	return nil
}
