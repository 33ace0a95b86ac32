package netcoll

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

var otherSecret = []byte("not this job's secret, 31 bytes")

func TestHandshake(t *testing.T) {
	for _, c := range []struct {
		name                 string
		dialKey, acceptKey   []byte
		dialPurp, acceptPurp string
		wantOK               bool
	}{
		{"same secret", testSecret, testSecret, purposeStore, purposeStore, true},
		{"other secret", otherSecret, testSecret, purposeStore, purposeStore, false},
		{"store proof on a peer connection", testSecret, testSecret, purposeStore, purposePeer, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			a, b := net.Pipe()
			defer a.Close()
			defer b.Close()
			accepted := make(chan error, 1)
			go func() {
				err := authAccept(b, c.acceptKey, c.acceptPurp)
				b.Close() // as the store and the mesh do on failure
				accepted <- err
			}()
			dialErr := authDial(a, c.dialKey, c.dialPurp)
			if dialErr != nil {
				a.Close() // as the store client and the mesh do
			}
			acceptErr := <-accepted
			if c.wantOK {
				if dialErr != nil || acceptErr != nil {
					t.Errorf("handshake: dialer %v, acceptor %v, want both nil", dialErr, acceptErr)
				}
				return
			}
			if !errors.Is(dialErr, ErrAuth) || !strings.Contains(dialErr.Error(), "LOOM_JOB_SECRET") {
				t.Errorf("dialer error = %v, want ErrAuth naming LOOM_JOB_SECRET", dialErr)
			}
			if acceptErr == nil {
				t.Errorf("acceptor error = nil, want a failed handshake")
			}
		})
	}
}

// startStore runs a store for a world of two with testSecret and returns
// its address; it stops when the test ends.
func startStore(t *testing.T) (*storeServer, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := newStoreServer(ln, testSecret, 0, 2)
	t.Cleanup(func() { s.close(0) })
	return s, ln.Addr().String()
}

func (s *storeServer) has(key string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.kv[key]
	return ok
}

// waitClosed waits until the other end closes c (an EOF, or a reset when
// it left bytes unread).
func waitClosed(t *testing.T, c net.Conn) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := io.Copy(io.Discard, c)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("the store kept the connection open")
	}
}

func TestStoreRefusesStrangers(t *testing.T) {
	s, addr := startStore(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	// A rank with another secret is refused at once, and says why.
	_, err := dialStore(ctx, addr, otherSecret, 0, 1, 2)
	if !errors.Is(err, ErrAuth) || !strings.Contains(err.Error(), "LOOM_JOB_SECRET") {
		t.Errorf("dialStore(other secret) = %v, want ErrAuth naming LOOM_JOB_SECRET", err)
	}

	// A client that skips the handshake and sends hello and set is cut off
	// before the store reads them.
	raw, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	writeFrame(raw, msgHello, enc(nil).u64(0).u32(1).u32(2))
	writeFrame(raw, msgSet, enc(nil).str("peer/1").bytes([]byte("127.0.0.1:1")))
	waitClosed(t, raw)
	raw.Close()

	// A client that answers the store's challenge with the store's own
	// proof (a reflection) is refused.
	raw, err = net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	raw.SetDeadline(time.Now().Add(10 * time.Second))
	raw.Write(append([]byte(authMagic), make([]byte, nonceLen)...))
	var challenge [len(authMagic) + nonceLen + proofLen]byte
	if _, err := io.ReadFull(raw, challenge[:]); err != nil {
		t.Fatal(err)
	}
	raw.Write(challenge[len(authMagic)+nonceLen:])
	var st [1]byte
	if _, err := io.ReadFull(raw, st[:]); err != nil || st[0] != authDenied {
		t.Errorf("reflected proof: status %d, %v; want %d (denied)", st[0], err, authDenied)
	}
	waitClosed(t, raw)
	raw.Close()

	if s.has("peer/1") {
		t.Fatalf("a client without the secret set a store key")
	}
	// The store still serves the job's own ranks.
	sc, err := dialStore(ctx, addr, testSecret, 0, 1, 2)
	if err != nil {
		t.Fatalf("dialStore(job's secret) = %v", err)
	}
	defer sc.bye()
	if err := sc.set(ctx, "peer/1", []byte("x")); err != nil || !s.has("peer/1") {
		t.Errorf("set by the job's rank: %v, key present %v", err, s.has("peer/1"))
	}
}

// TestWrongSecretCannotJoin runs Init for a world of two in which rank 1
// holds another secret: rank 1 fails at once naming the variable, and rank
// 0 never completes the ring.
func TestWrongSecretCannotJoin(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	errs := make(chan error, 2)
	for r, secret := range [][]byte{testSecret, otherSecret} {
		go func() {
			cfg := Config{Rank: r, WorldSize: 2, MasterAddr: "127.0.0.1", MasterPort: port, Secret: secret,
				Transport: "tcp", ConnectTimeout: 2 * time.Second}
			if r == 0 {
				cfg.StoreListener = ln
			}
			c, err := Init(context.Background(), cfg)
			if c != nil {
				c.Close()
			}
			errs <- err
		}()
	}
	var sawAuth int
	for range 2 {
		err := <-errs
		if err == nil {
			t.Errorf("Init succeeded in a world where rank 1 holds another secret")
			continue
		}
		if errors.Is(err, ErrAuth) && strings.Contains(err.Error(), "LOOM_JOB_SECRET") {
			sawAuth++
		}
	}
	if sawAuth != 1 {
		t.Errorf("%d ranks reported the secret mismatch, want 1 (rank 1)", sawAuth)
	}
}

func TestInitNeedsSecret(t *testing.T) {
	_, err := Init(context.Background(), Config{Rank: 0, WorldSize: 1, MasterAddr: "127.0.0.1", MasterPort: 1})
	if err == nil || !strings.Contains(err.Error(), "LOOM_JOB_SECRET is not set") {
		t.Errorf("Init(no secret) = %v, want an error naming LOOM_JOB_SECRET", err)
	}
}

// TestInsecureOptOut: with Insecure and no secret on every rank the job
// runs unauthenticated, as before LOOM_JOB_SECRET existed.
func TestInsecureOptOut(t *testing.T) {
	comms := startRanks(t, 2, func(c *Config) { c.Secret, c.Insecure = nil, true })
	buf := []float32{1, 2}
	errs := parallel(comms, func(c *Comm) error { return AllReduce(context.Background(), c, buf[:1], make([]float32, 1), Sum) })
	noErrors(t, "insecure allreduce", errs)
}

// TestMeshRefusesStrangers drives rank 0's side of a two-rank mesh: a
// dialer with another secret is refused at once, one announcing an absurd
// socket count is refused without the allocation it asks for, and the
// real rank 1 then joins.
func TestMeshRefusesStrangers(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	const session, epoch = 42, 3
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	type result struct {
		mesh [][]conn
		err  error
	}
	done := make(chan result, 1)
	go func() {
		mesh, err := buildTCPMesh(ctx, ln, testSecret, 0, 2, 1, session, epoch, []string{addr, ""})
		done <- result{mesh, err}
	}()

	_, err = dialPeer(ctx, addr, otherSecret, hello{session, epoch, 1, 0, 1})
	if !errors.Is(err, ErrAuth) || !strings.Contains(err.Error(), "LOOM_JOB_SECRET") {
		t.Errorf("dialPeer(other secret) = %v, want ErrAuth naming LOOM_JOB_SECRET", err)
	}
	before := totalAlloc()
	_, err = dialPeer(ctx, addr, testSecret, hello{session, epoch, 1, 0, 1 << 31})
	if err == nil {
		t.Errorf("dialPeer(2^31 sockets) = nil error, want a refusal")
	}
	if grew := totalAlloc() - before; grew > 1<<20 {
		t.Errorf("a hello announcing 2^31 sockets allocated %d bytes", grew)
	}
	c, err := dialPeer(ctx, addr, testSecret, hello{session, epoch, 1, 0, 1})
	if err != nil {
		t.Fatalf("dialPeer(job's secret) = %v", err)
	}
	defer c.Close()
	r := <-done
	if r.err != nil {
		t.Fatalf("buildTCPMesh = %v", r.err)
	}
	if len(r.mesh[1]) != 1 || r.mesh[1][0] == nil {
		t.Errorf("mesh to rank 1 = %v, want one connection", r.mesh[1])
	}
	r.mesh[1][0].Close()
}

func totalAlloc() uint64 {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.TotalAlloc
}

// Lengths read from the wire are checked before they size anything.
func TestOversizedLengthsRefused(t *testing.T) {
	header := func(n uint32) []byte { return binary.BigEndian.AppendUint32(nil, n) }
	before := totalAlloc()
	for _, n := range []uint32{0, maxFrame + 1, 1 << 31, 1<<32 - 1} {
		r := strings.NewReader(string(append(header(n), msgSet)))
		if _, err := readFrame(r); err == nil || !strings.Contains(err.Error(), "bad frame length") {
			t.Errorf("readFrame(length %d) = %v, want a bad frame length error", n, err)
		}
	}
	// A field that claims more bytes than its message holds.
	d := dec{b: append(header(1<<30), "short"...)}
	if v := d.bytes(); v != nil || d.err == nil || !strings.Contains(d.err.Error(), "exceeds") {
		t.Errorf("dec.bytes(length 2^30 in a 9-byte message) = %d bytes, %v; want nil and an error", len(v), d.err)
	}
	// A shared-memory or RDMA setup message.
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	go a.Write(header(1 << 31))
	if _, err := recvMsg(b, time.Now().Add(10*time.Second)); err == nil || !strings.Contains(err.Error(), "length") {
		t.Errorf("recvMsg(length 2^31) = %v, want a bad length error", err)
	}
	if grew := totalAlloc() - before; grew > 1<<20 {
		t.Errorf("oversized lengths allocated %d bytes", grew)
	}
}
