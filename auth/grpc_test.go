package auth

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/loomhpc/loom/auth/munge"
)

var self = Identity{UID: uint32(os.Getuid()), GID: uint32(os.Getgid())}

// callBoth makes a unary and a stream call with h and returns their errors,
// so that each test covers both interceptors.
func callBoth(t *testing.T, h healthpb.HealthClient, ctx context.Context) (unary, stream error) {
	t.Helper()
	_, unary = h.Check(ctx, &healthpb.HealthCheckRequest{})
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w, err := h.Watch(ctx, &healthpb.HealthCheckRequest{})
	if err == nil {
		_, err = w.Recv()
	}
	return unary, err
}

func TestGRPCLocalMode(t *testing.T) {
	ts := startServer(t, Config{Mode: ModeLocal})
	ctx := testContext(t)

	local := dial(t, "unix://"+ts.local, grpc.WithTransportCredentials(PeerCredentials()))
	want := Identity{UID: self.UID, GID: self.GID, Method: MethodLocal, Local: true}
	unary, stream := callBoth(t, local, ctx)
	for name, err := range map[string]error{"Check": unary, "Watch": stream} {
		if err != nil {
			t.Errorf("%s on the local socket: %v", name, err)
		}
	}
	if got := ts.last(t); !got.ok || got.id != want {
		t.Errorf("handler saw %+v, want %+v", got, want)
	}

	tcp := dial(t, ts.tcp, grpc.WithTransportCredentials(insecure.NewCredentials()))
	unary, stream = callBoth(t, tcp, ctx)
	for name, err := range map[string]error{"Check": unary, "Watch": stream} {
		if status.Code(err) != codes.Unauthenticated || !strings.Contains(err.Error(), "Unix socket") {
			t.Errorf("%s over TCP in local mode: error = %v, want Unauthenticated pointing to the Unix socket", name, err)
		}
	}
}

// TestGRPCLocalOtherUser checks that the server sees the uid of the
// process at the other end of the socket: one running as nobody.
func TestGRPCLocalOtherUser(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root to run a process as nobody")
	}
	ts := startServer(t, Config{Mode: ModeLocal})
	const nobody = 65534
	cmd := exec.Command("/proc/self/exe", "-test.run=^$")
	cmd.Env = append(os.Environ(), dialLocalEnv+"="+ts.local)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("Check as nobody: %v: %s", err, out.String())
	}
	want := Identity{UID: nobody, GID: nobody, Method: MethodLocal, Local: true}
	if got := ts.last(t); !got.ok || got.id != want {
		t.Errorf("handler saw %+v, want %+v", got, want)
	}
}

func TestGRPCMungeMode(t *testing.T) {
	d := munge.StartTestDaemon(t)
	ts := startServer(t, Config{Mode: ModeMunge, Munge: d.Client(), Exempt: []string{"/grpc.health.v1.Health/List"}})
	ctx := testContext(t)
	want := Identity{UID: self.UID, GID: self.GID, Method: MethodMunge}

	t.Run("per-call credentials", func(t *testing.T) {
		h := dial(t, ts.tcp, grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithPerRPCCredentials(MungeCredentials{Munge: d.Client(), AllowPlaintext: true}))
		// Twice each: every call needs a fresh credential.
		for range 2 {
			unary, stream := callBoth(t, h, ctx)
			if unary != nil || stream != nil {
				t.Fatalf("Check: %v; Watch: %v", unary, stream)
			}
			if got := ts.last(t); !got.ok || got.id != want {
				t.Errorf("handler saw %+v, want %+v", got, want)
			}
		}
	})

	t.Run("plaintext refused unless allowed", func(t *testing.T) {
		conn, err := grpc.NewClient(ts.tcp, grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithPerRPCCredentials(MungeCredentials{Munge: d.Client()}))
		if err == nil {
			conn.Close()
			t.Error("grpc.NewClient with MUNGE credentials over plaintext TCP succeeded, want it refused")
		}
	})

	t.Run("local socket counts as secure", func(t *testing.T) {
		h := dial(t, "unix://"+ts.local, grpc.WithTransportCredentials(PeerCredentials()),
			grpc.WithPerRPCCredentials(MungeCredentials{Munge: d.Client()}))
		if _, err := h.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
			t.Fatalf("Check on the local socket with MUNGE credentials: %v", err)
		}
		want := Identity{UID: self.UID, GID: self.GID, Method: MethodLocal, Local: true}
		if got := ts.last(t); !got.ok || got.id != want {
			t.Errorf("handler saw %+v, want %+v: peer credentials win over MUNGE", got, want)
		}
	})

	bare := dial(t, ts.tcp, grpc.WithTransportCredentials(insecure.NewCredentials()))
	withCred := func(t *testing.T, method string) context.Context {
		cred, err := d.Client().Encode([]byte(bindPayload(method)))
		if err != nil {
			t.Fatalf("Encode: %v", err)
		}
		return metadata.AppendToOutgoingContext(ctx, MungeMetadataKey, cred)
	}

	t.Run("replayed", func(t *testing.T) {
		ctx := withCred(t, checkMethod)
		if _, err := bare.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
			t.Fatalf("first Check: %v", err)
		}
		_, err := bare.Check(ctx, &healthpb.HealthCheckRequest{})
		if status.Code(err) != codes.Unauthenticated || !strings.Contains(strings.ToLower(err.Error()), "replayed") {
			t.Errorf("second Check with the same credential: error = %v, want Unauthenticated, replayed", err)
		}
	})

	t.Run("bound to its method", func(t *testing.T) {
		_, err := bare.Check(withCred(t, watchMethod), &healthpb.HealthCheckRequest{})
		if status.Code(err) != codes.Unauthenticated || !strings.Contains(err.Error(), watchMethod) {
			t.Errorf("Check with a credential for Watch: error = %v, want Unauthenticated naming %s", err, watchMethod)
		}
	})

	t.Run("no credential", func(t *testing.T) {
		unary, stream := callBoth(t, bare, ctx)
		for name, err := range map[string]error{"Check": unary, "Watch": stream} {
			if status.Code(err) != codes.Unauthenticated || !strings.Contains(err.Error(), MungeMetadataKey) {
				t.Errorf("%s without a credential: error = %v, want Unauthenticated naming %s", name, err, MungeMetadataKey)
			}
		}
	})

	t.Run("exempt method", func(t *testing.T) {
		if _, err := bare.List(ctx, &healthpb.HealthListRequest{}); err != nil {
			t.Fatalf("List (exempt) without a credential: %v", err)
		}
		if got := ts.last(t); got.ok {
			t.Errorf("handler of an exempt method saw identity %v, want none", got.id)
		}
	})
}
