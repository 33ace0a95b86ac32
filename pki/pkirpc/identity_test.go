package pkirpc

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/loomhpc/loom/pki"
)

// guardedHealth is the tiny test service: Check's service field says what
// the caller claims to be, as a request of the real API would name a node.
// "agent/NODE" admits only the agent of NODE (RequireAgent); "server"
// admits only servers (RequireRole).
type guardedHealth struct {
	healthpb.UnimplementedHealthServer
}

func (guardedHealth) Check(ctx context.Context, req *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	if node, ok := strings.CutPrefix(req.Service, "agent/"); ok {
		if err := RequireAgent(ctx, node); err != nil {
			return nil, err
		}
	} else if _, err := RequireRole(ctx, pki.RoleServer); err != nil {
		return nil, err
	}
	return &healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING}, nil
}

// startGRPC serves guardedHealth over TLS with cfg on a loopback port.
func startGRPC(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer(grpc.Creds(credentials.NewTLS(cfg)))
	healthpb.RegisterHealthServer(s, guardedHealth{})
	served := make(chan struct{})
	go func() {
		defer close(served)
		s.Serve(ln)
	}()
	t.Cleanup(func() {
		s.Stop()
		<-served
	})
	return ln.Addr().String()
}

func TestGRPC(t *testing.T) {
	p := pki.NewTestPKI(t)
	s1 := p.Files(pki.RoleServer, "s1")
	addr := startGRPC(t, must(t)(pki.ServerConfig(s1, pki.ServerOptions{})))
	daemon := func(f pki.Files) *tls.Config { return must(t)(pki.DaemonClientConfig(f)) }
	tests := []struct {
		name    string
		client  *tls.Config
		service string
		want    codes.Code
	}{
		{"agent for its own node", daemon(p.Files(pki.RoleAgent, "node7")), "agent/node7", codes.OK},
		{"agent for another node", daemon(p.Files(pki.RoleAgent, "node7")), "agent/node8", codes.PermissionDenied},
		{"server as an agent", daemon(p.Files(pki.RoleServer, "s2")), "agent/node7", codes.PermissionDenied},
		{"server to server", daemon(p.Files(pki.RoleServer, "s2")), "server", codes.OK},
		{"agent as a server", daemon(p.Files(pki.RoleAgent, "node7")), "server", codes.PermissionDenied},
		{"cli cert as a server", must(t)(pki.CLIClientConfig(p.Files(pki.RoleCLI, ""))), "server", codes.PermissionDenied},
		{"no cert as an agent", must(t)(pki.CLIClientConfig(pki.Files{CA: s1.CA})), "agent/node7", codes.Unauthenticated},
		{"no cert as a server", must(t)(pki.CLIClientConfig(pki.Files{CA: s1.CA})), "server", codes.Unauthenticated},
		// A client of another cluster never gets as far as a method.
		{"another CA", must(t)(pki.CLIClientConfig(pki.Files{CA: pki.NewTestPKI(t).CA.CertFile})), "server", codes.Unavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The address is 127.0.0.1; the configs verify server.loom.
			cc, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(credentials.NewTLS(tt.client)))
			if err != nil {
				t.Fatal(err)
			}
			defer cc.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_, err = healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{Service: tt.service})
			if got := status.Code(err); got != tt.want {
				t.Errorf("Check(%q) = %v, want code %v", tt.service, err, tt.want)
			}
		})
	}
}

// The messages say who called and what the method needed.
func TestGRPCMessages(t *testing.T) {
	p := pki.NewTestPKI(t)
	addr := startGRPC(t, must(t)(pki.ServerConfig(p.Files(pki.RoleServer, "s1"), pki.ServerOptions{})))
	cc, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(credentials.NewTLS(must(t)(pki.DaemonClientConfig(p.Files(pki.RoleAgent, "node7"))))))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{Service: "agent/node8"})
	if want := `agent certificate of node "node7" may not act for node "node8"`; status.Convert(err).Message() != want {
		t.Errorf("Check(agent/node8) message = %q, want %q", status.Convert(err).Message(), want)
	}
	_, err = healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{Service: "server"})
	if want := "agent node7 may not call this method: it needs a certificate of role server"; status.Convert(err).Message() != want {
		t.Errorf("Check(server) message = %q, want %q", status.Convert(err).Message(), want)
	}
}

// A call that did not come over TLS has no identity: Unauthenticated.
func TestRequireRoleWithoutTLS(t *testing.T) {
	if _, err := PeerIdentityFromContext(context.Background()); !errors.Is(err, pki.ErrNotTLS) {
		t.Errorf("PeerIdentityFromContext(no peer) = %v, want pki.ErrNotTLS", err)
	}
	_, err := RequireRole(context.Background(), pki.RoleServer)
	if status.Code(err) != codes.Unauthenticated {
		t.Errorf("RequireRole(no peer) = %v, want code Unauthenticated", err)
	}
	if err := RequireAgent(context.Background(), "node7"); status.Code(err) != codes.Unauthenticated {
		t.Errorf("RequireAgent(no peer) = %v, want code Unauthenticated", err)
	}
}

func must(t *testing.T) func(*tls.Config, error) *tls.Config {
	return func(c *tls.Config, err error) *tls.Config {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
}
