package pki

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	hraft "github.com/hashicorp/raft"
)

// logRecords is a slog handler that hands each record's text to a test.
type logRecords chan string

func (h logRecords) Enabled(context.Context, slog.Level) bool { return true }
func (h logRecords) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h logRecords) WithGroup(string) slog.Handler            { return h }

func (h logRecords) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(r.Message)
	r.Attrs(func(a slog.Attr) bool {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		return true
	})
	select {
	case h <- b.String():
	default: // a test that stopped reading loses records, never blocks
	}
	return nil
}

// wait returns the first record containing all of parts.
func (h logRecords) wait(t *testing.T, parts ...string) string {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case rec := <-h:
			ok := true
			for _, p := range parts {
				ok = ok && strings.Contains(rec, p)
			}
			if ok {
				return rec
			}
		case <-timeout:
			t.Fatalf("no log record containing %q", parts)
		}
	}
}

func newLayer(t *testing.T, f Files) (*RaftLayer, logRecords) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	logs := make(logRecords, 64)
	l, err := NewRaftLayer(ln, f, RaftLayerOptions{Logger: slog.New(logs)})
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l, logs
}

// accept returns the layer's next connection, failing t if none comes.
func accept(t *testing.T, l *RaftLayer) net.Conn {
	t.Helper()
	got := make(chan net.Conn, 1)
	go func() {
		c, _ := l.Accept()
		got <- c
	}()
	select {
	case c := <-got:
		if c == nil {
			t.Fatal("Accept failed")
		}
		return c
	case <-time.After(10 * time.Second):
		l.Close() // ends the Accept above
		<-got
		t.Fatal("Accept returned nothing")
		return nil
	}
}

func TestRaftLayerAccept(t *testing.T) {
	p := NewTestPKI(t)
	a, logs := newLayer(t, p.Files(RoleServer, "s1"))
	refused := []struct {
		name   string
		client *tls.Config
		reason string
	}{
		{"agent certificate", must(t)(DaemonClientConfig(p.Files(RoleAgent, "node7"))), "agent node7 certificate refused"},
		{"cli certificate", must(t)(CLIClientConfig(p.Files(RoleCLI, ""))), "cli certificate refused"},
		{"no certificate", must(t)(CLIClientConfig(Files{CA: p.CA.CertFile})), "certificate"},
		{"another CA", rawClient(t, p, NewTestPKI(t).Files(RoleServer, "s2")), "unknown authority"},
	}
	for _, tt := range refused {
		c, err := tls.Dial("tcp", a.Addr().String(), tt.client)
		if err == nil {
			c.SetDeadline(time.Now().Add(10 * time.Second))
			_, err = io.ReadFull(c, make([]byte, 1))
			c.Close()
		}
		if err == nil {
			t.Errorf("%s: the layer let the client read", tt.name)
		}
		logs.wait(t, "refused an incoming connection", "reason=", tt.reason)
	}

	// None of those reached Accept: the next connection it returns is the
	// server's.
	b, _ := newLayer(t, p.Files(RoleServer, "s2"))
	out, err := b.Dial(a.Addr().String(), 10*time.Second)
	if err != nil {
		t.Fatalf("server s2 Dial: %v", err)
	}
	defer out.Close()
	in := accept(t, a)
	defer in.Close()
	if in.RemoteAddr().String() != out.LocalAddr().String() {
		t.Fatalf("Accept returned the connection from %s, want the server's from %s", in.RemoteAddr(), out.LocalAddr())
	}
	if id, err := PeerIdentity(in.(*tls.Conn).ConnectionState()); err != nil || id != (Identity{RoleServer, "s2"}) {
		t.Errorf("accepted peer = %v, %v; want server s2", id, err)
	}
	out.Write([]byte("ping"))
	buf := make([]byte, 4)
	in.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(in, buf); err != nil || string(buf) != "ping" {
		t.Errorf("read %q, %v; want ping", buf, err)
	}
}

func TestRaftLayerDialRefuses(t *testing.T) {
	p := NewTestPKI(t)
	a, logs := newLayer(t, p.Files(RoleServer, "s1"))
	tests := []struct {
		name   string
		server *tls.Config
		reason string
	}{
		{"agent certificate", must(t)(ServerConfig(p.Files(RoleAgent, "node7"), ServerOptions{})), "server.loom"},
		{"another CA", must(t)(ServerConfig(NewTestPKI(t).Files(RoleServer, "s2"), ServerOptions{})), "unknown authority"},
	}
	for _, tt := range tests {
		ln, err := tls.Listen("tcp", "127.0.0.1:0", tt.server)
		if err != nil {
			t.Fatal(err)
		}
		served := make(chan struct{})
		go func() {
			defer close(served)
			if c, err := ln.Accept(); err == nil {
				c.(*tls.Conn).Handshake()
				c.Close()
			}
		}()
		_, err = a.Dial(ln.Addr().String(), 10*time.Second)
		if err == nil || !strings.Contains(err.Error(), tt.reason) {
			t.Errorf("%s: Dial = %v, want an error containing %q", tt.name, err, tt.reason)
		}
		logs.wait(t, "refused to talk to a peer", "reason=", tt.reason)
		ln.Close()
		<-served
	}
}

// A peer that connects and never handshakes holds up no other, and Close
// does not wait for it.
func TestRaftLayerStalledPeer(t *testing.T) {
	p := NewTestPKI(t)
	a, _ := newLayer(t, p.Files(RoleServer, "s1"))
	stalled, err := net.Dial("tcp", a.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer stalled.Close()
	b, _ := newLayer(t, p.Files(RoleServer, "s2"))
	out, err := b.Dial(a.Addr().String(), 10*time.Second)
	if err != nil {
		t.Fatalf("Dial beside a stalled peer: %v", err)
	}
	defer out.Close()
	accept(t, a).Close()

	if err := a.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	a.Close() // a second Close is harmless
	if _, err := a.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Accept after Close = %v, want net.ErrClosed", err)
	}
}

// raftStream is the hraft.StreamLayer of a RaftLayer, as raftnode makes
// it.
type raftStream struct{ *RaftLayer }

func (s raftStream) Dial(address hraft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	return s.RaftLayer.Dial(string(address), timeout)
}

// Two hashicorp/raft network transports over RaftLayers carry an RPC.
func TestRaftTransport(t *testing.T) {
	p := NewTestPKI(t)
	newTransport := func(name string) *hraft.NetworkTransport {
		l, _ := newLayer(t, p.Files(RoleServer, name))
		tr := hraft.NewNetworkTransportWithLogger(raftStream{l}, 2, 10*time.Second, hclog.NewNullLogger())
		t.Cleanup(func() { tr.Close() })
		return tr
	}
	a, b := newTransport("s1"), newTransport("s2")
	done := make(chan struct{})
	defer func() { <-done }()
	go func() {
		defer close(done)
		select {
		case rpc := <-b.Consumer():
			req, ok := rpc.Command.(*hraft.AppendEntriesRequest)
			if !ok {
				rpc.Respond(nil, fmt.Errorf("unexpected %T", rpc.Command))
				return
			}
			rpc.Respond(&hraft.AppendEntriesResponse{Term: req.Term, LastLog: 42, Success: true}, nil)
		case <-time.After(10 * time.Second):
			t.Errorf("s2 received no RPC")
		}
	}()
	var resp hraft.AppendEntriesResponse
	err := a.AppendEntries("s2", b.LocalAddr(), &hraft.AppendEntriesRequest{RPCHeader: hraft.RPCHeader{ProtocolVersion: hraft.ProtocolVersionMax}, Term: 7}, &resp)
	if err != nil {
		t.Fatalf("AppendEntries: %v", err)
	}
	if !resp.Success || resp.Term != 7 || resp.LastLog != 42 {
		t.Errorf("AppendEntries response = %+v, want Success, Term 7, LastLog 42", resp)
	}
}
