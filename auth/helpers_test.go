package auth

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/loomhpc/loom/auth/munge"
)

// dialLocalEnv names the local socket that a re-executed test binary
// calls Health.Check on, exiting 0 on success, instead of running tests.
const dialLocalEnv = "LOOM_AUTH_TEST_DIAL_LOCAL"

func TestMain(m *testing.M) {
	if socket := os.Getenv(dialLocalEnv); socket != "" {
		if err := checkHealth(socket); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func checkHealth(socket string) error {
	conn, err := grpc.NewClient("unix://"+socket, grpc.WithTransportCredentials(PeerCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err = healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	return err
}

// Full method names of the health service the tests call.
const (
	checkMethod = "/grpc.health.v1.Health/Check"
	watchMethod = "/grpc.health.v1.Health/Watch"
)

// fakeMunge is an in-memory MUNGE that makes credentials for a fixed uid
// and gid and, like munged, decodes each once.
type fakeMunge struct {
	uid, gid uint32

	mu     sync.Mutex
	issued map[string][]byte
	spent  map[string]bool
	err    error // returned by every Decode when set
}

func newFakeMunge(uid, gid uint32) *fakeMunge {
	return &fakeMunge{uid: uid, gid: gid, issued: map[string][]byte{}, spent: map[string]bool{}}
}

func (f *fakeMunge) Encode(payload []byte) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	cred := fmt.Sprintf("FAKE:%d:", len(f.issued))
	f.issued[cred] = payload
	return cred, nil
}

func (f *fakeMunge) Decode(cred string) (munge.Credential, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return munge.Credential{}, f.err
	}
	payload, ok := f.issued[cred]
	if !ok {
		return munge.Credential{}, fmt.Errorf("fake: %w", munge.ErrInvalid)
	}
	if f.spent[cred] {
		return munge.Credential{}, fmt.Errorf("fake: %w", munge.ErrReplayed)
	}
	f.spent[cred] = true
	return munge.Credential{UID: f.uid, GID: f.gid, Payload: payload}, nil
}

// mustEncode returns a credential of f bound to fullMethod.
func (f *fakeMunge) mustEncode(fullMethod string) string {
	cred, _ := f.Encode([]byte(bindPayload(fullMethod)))
	return cred
}

// seen is what a handler found in its context.
type seen struct {
	id Identity
	ok bool
}

// testServer is a gRPC server with the health service behind an
// Authenticator, on TCP and on a local socket, recording the identity
// each handler sees.
type testServer struct {
	tcp, local string // addresses

	mu   sync.Mutex
	seen []seen
}

func startServer(t *testing.T, cfg Config) *testServer {
	t.Helper()
	a, err := NewAuthenticator(cfg)
	if err != nil {
		t.Fatalf("NewAuthenticator: %v", err)
	}
	ts := &testServer{}
	srv := grpc.NewServer(
		grpc.Creds(LocalOr(insecure.NewCredentials())),
		grpc.ChainUnaryInterceptor(a.UnaryInterceptor(), ts.recordUnary),
		grpc.ChainStreamInterceptor(a.StreamInterceptor(), ts.recordStream),
	)
	healthpb.RegisterHealthServer(srv, health.NewServer())
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ts.tcp = tcp.Addr().String()
	ts.local = filepath.Join(sharedDir(t), "local.sock")
	local, err := ListenLocal(ts.local)
	if err != nil {
		t.Fatalf("ListenLocal: %v", err)
	}
	var wg sync.WaitGroup
	for _, lis := range []net.Listener{tcp, local} {
		wg.Go(func() { srv.Serve(lis) })
	}
	t.Cleanup(func() {
		srv.Stop()
		wg.Wait()
	})
	return ts
}

func (ts *testServer) record(ctx context.Context) {
	id, ok := FromContext(ctx)
	ts.mu.Lock()
	defer ts.mu.Unlock()
	ts.seen = append(ts.seen, seen{id, ok})
}

// last returns what the last handler saw.
func (ts *testServer) last(t *testing.T) seen {
	t.Helper()
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if len(ts.seen) == 0 {
		t.Fatal("no call reached a handler")
	}
	return ts.seen[len(ts.seen)-1]
}

func (ts *testServer) recordUnary(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	ts.record(ctx)
	return handler(ctx, req)
}

func (ts *testServer) recordStream(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	ts.record(ss.Context())
	return handler(srv, ss)
}

// dial returns a health client of target, closed when t ends.
func dial(t *testing.T, target string, opts ...grpc.DialOption) healthpb.HealthClient {
	t.Helper()
	conn, err := grpc.NewClient(target, opts...)
	if err != nil {
		t.Fatalf("grpc.NewClient(%s): %v", target, err)
	}
	t.Cleanup(func() { conn.Close() })
	return healthpb.NewHealthClient(conn)
}

// sharedDir returns a temporary directory that other users can reach,
// for sockets that test processes running as nobody connect to.
func sharedDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "loom-auth-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

var _ credentials.PerRPCCredentials = MungeCredentials{}
