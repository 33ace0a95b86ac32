package harness

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/loomhpc/loom/api"
	"github.com/loomhpc/loom/api/apirpc"
	"github.com/loomhpc/loom/auth"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// Dial returns a gRPC connection to addr as a client of the test
// clusters: to a local socket (unix://PATH, Server.Client) with peer
// credentials, which identify the caller as the user running the test;
// to any other address in plaintext, for servers started with
// --tls=false. The connection is made lazily, so Dial does not wait for
// the server.
func Dial(addr string) (*grpc.ClientConn, error) {
	creds := insecure.NewCredentials()
	if strings.HasPrefix(addr, "unix:") {
		creds = auth.PeerCredentials()
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds), apirpc.ClientSizeOption())
	if err != nil {
		return nil, fmt.Errorf("harness: dial %s: %w", addr, err)
	}
	return conn, nil
}

// Leader asks every server for its status and returns the index of the
// first that says it leads, with its status, or -1 and nil when none does
// right now (no quorum, an election, or no answer within a second).
func Leader(ctx context.Context, servers []apirpc.OperatorClient) (int, *api.ServerStatusResponse) {
	for i, op := range servers {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		st, err := op.ServerStatus(cctx, &api.ServerStatusRequest{})
		cancel()
		if err == nil && st.GetServer().GetLeader() {
			return i, st
		}
	}
	return -1, nil
}

// WaitLeader waits up to timeout (scaled) for one of servers to lead and
// returns its index.
func WaitLeader(ctx context.Context, servers []apirpc.OperatorClient, timeout time.Duration) (int, error) {
	leader := -1
	err := Wait(ctx, "a leader", timeout, func() bool {
		leader, _ = Leader(ctx, servers)
		return leader >= 0
	})
	return leader, err
}
