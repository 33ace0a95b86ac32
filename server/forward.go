package server

import (
	"context"
	"sync"

	"github.com/loomhpc/loom/api/apirpc"
	"github.com/loomhpc/loom/auth"
	"github.com/loomhpc/loom/state"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// forwardedKey marks a request a follower forwarded, so that a server that
// lost leadership meanwhile answers Unavailable instead of forwarding again.
const forwardedKey = "loom-forwarded"

// leaderConns caches one client connection to the current leader.
type leaderConns struct {
	mu   sync.Mutex
	addr string
	conn *grpc.ClientConn
}

func (lc *leaderConns) get(addr string, creds credentials.TransportCredentials) (*grpc.ClientConn, error) {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	if lc.conn != nil && lc.addr == addr {
		return lc.conn, nil
	}
	if lc.conn != nil {
		lc.conn.Close()
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds), apirpc.ClientSizeOption())
	if err != nil {
		return nil, err
	}
	lc.addr, lc.conn = addr, conn
	return conn, nil
}

func (lc *leaderConns) close() {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	if lc.conn != nil {
		lc.conn.Close()
		lc.conn = nil
	}
}

// leaderConn returns nil when this server leads and the caller should act
// itself; otherwise a connection to the leader and a context marking the
// request as forwarded. The connection presents this server's
// certificate, and the context names the user this server proved, which
// the leader believes because of that certificate.
func (s *Server) leaderConn(ctx context.Context) (*grpc.ClientConn, context.Context, error) {
	if s.raft.IsLeader() {
		return nil, ctx, nil
	}
	if md, ok := metadata.FromIncomingContext(ctx); ok && len(md.Get(forwardedKey)) > 0 {
		return nil, ctx, status.Errorf(codes.Unavailable, "%s is no longer the leader: %s", s.cfg.Name, s.leaderHint())
	}
	_, id := s.raft.Leader()
	if id == "" {
		return nil, ctx, status.Error(codes.Unavailable, "no leader elected (no quorum?): retry, or check that a majority of servers is up")
	}
	rec := s.State().Server(id)
	if rec == nil || rec.RpcAddr == "" {
		return nil, ctx, status.Errorf(codes.Unavailable, "leader %s has not published its API address yet", id)
	}
	creds, err := s.dialCreds()
	if err != nil {
		return nil, ctx, status.Errorf(codes.Internal, "tls: %v", err)
	}
	conn, err := s.fwd.get(rec.RpcAddr, creds)
	if err != nil {
		return nil, ctx, status.Errorf(codes.Unavailable, "leader %s at %s: %v", id, rec.RpcAddr, err)
	}
	s.metrics.forwarded.Inc()
	if user, ok := auth.FromContext(ctx); ok {
		ctx = auth.ForwardContext(ctx, user)
	}
	return conn, metadata.AppendToOutgoingContext(ctx, forwardedKey, s.cfg.Name), nil
}

// forward runs call against the leader when this server is not it, and
// reports whether it did.
func forward[T any](s *Server, ctx context.Context, call func(context.Context, *grpc.ClientConn) (T, error)) (T, bool, error) {
	var zero T
	conn, fctx, err := s.leaderConn(ctx)
	if err != nil {
		return zero, true, err
	}
	if conn == nil {
		return zero, false, nil
	}
	resp, err := call(fctx, conn)
	if leaderDidNotAnswer(ctx, err) {
		// Say so as this server's own answer, so the client keeps
		// retrying while a new leader is elected.
		_, id := s.raft.Leader()
		err = status.Errorf(codes.Unavailable, "%s could not reach leader %s: %s", s.cfg.Name, id, status.Convert(err).Message())
	}
	return resp, true, err
}

// leaderDidNotAnswer reports whether a call forwarded under ctx failed
// because the leader did not answer: it was unreachable (it may have just
// died), or the connection to it was closed under the call (a newer
// leader replaced it in leaderConns) while the caller still waited.
func leaderDidNotAnswer(ctx context.Context, err error) bool {
	code := status.Code(err)
	return code == codes.Unavailable || code == codes.Canceled && ctx.Err() == nil
}

// readState returns the state a read should be served from: the local one
// at minIndex or newer (read-your-writes), or for consistent reads the
// leader's after confirming leadership with a quorum. ok is false when the
// read must be forwarded to the leader.
func (s *Server) readState(ctx context.Context, minIndex uint64, consistent bool) (snap *state.View, ok bool, err error) {
	if consistent {
		if !s.raft.IsLeader() {
			return nil, false, nil
		}
		if err := s.raft.VerifyLeader(ctx); err != nil {
			return nil, true, toStatus(err)
		}
	}
	snap, err = s.readAt(ctx, minIndex)
	if err != nil {
		return nil, true, err
	}
	return snap, true, nil
}
