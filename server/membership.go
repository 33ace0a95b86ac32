package server

import (
	"context"
	"fmt"
	"net"
	"slices"
	"time"

	"github.com/loomhpc/loom/api"
	"github.com/loomhpc/loom/api/apirpc"
	"github.com/loomhpc/loom/raftnode"
	"github.com/loomhpc/loom/state"
	"google.golang.org/grpc"
)

// self describes this server as peers and clients should reach it.
func (s *Server) self() *api.ServerInfo {
	return &api.ServerInfo{Id: s.cfg.Name, RaftAddr: s.raft.Addr(), RpcAddr: s.advertiseRPC, MetricsAddr: s.advertiseMetrics,
		Leader: s.raft.IsLeader(), Voter: true}
}

// advertisedRPC turns the listen address into one peers can dial: an
// unspecified host (":7070") takes the Raft address's host.
func advertisedRPC(listen net.Addr, raftAddr string) string {
	tcp := listen.(*net.TCPAddr)
	if !tcp.IP.IsUnspecified() {
		return tcp.String()
	}
	host, _, err := net.SplitHostPort(raftAddr)
	if err != nil || host == "" {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, fmt.Sprint(tcp.Port))
}

// formCluster brings a new server into a cluster when its data dir is
// empty: with --bootstrap-expect N it asks the --join addresses who they
// are until N servers (itself included) know of each other, then all of
// them bootstrap the same configuration; a server that finds an existing
// cluster at a --join address asks to join it instead.
func (s *Server) formCluster(ctx context.Context) {
	if s.raft.HasState() || len(s.cfg.Join) == 0 {
		return
	}
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for !s.raft.HasState() {
		peers := map[string]*api.ServerInfo{s.cfg.Name: s.self()}
		for _, addr := range s.cfg.Join {
			st, err := s.peerStatus(ctx, addr)
			if err != nil {
				s.log.Debug("join address not answering", "addr", addr, "err", err)
				continue
			}
			if st.HasState {
				if err := s.joinVia(ctx, addr); err != nil {
					// Common while the others elect their first leader.
					s.log.Debug("join not accepted yet", "addr", addr, "err", err)
					continue
				}
				s.log.Info("joined an existing cluster", "via", addr)
				return
			}
			peers[st.Server.Id] = st.Server
		}
		if s.cfg.BootstrapExpect > 1 && len(peers) >= s.cfg.BootstrapExpect {
			var list []raftnode.Peer
			for _, p := range peers {
				list = append(list, raftnode.Peer{ID: p.Id, Addr: p.RaftAddr, Voter: true})
			}
			slices.SortFunc(list, func(a, b raftnode.Peer) int { return cmpString(a.ID, b.ID) })
			if err := s.raft.BootstrapServers(list); err != nil {
				s.log.Error("bootstrap failed", "err", err)
			} else {
				s.log.Info("bootstrapped the cluster", "servers", len(list))
				return
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func (s *Server) dialPeer(addr string) (*grpc.ClientConn, error) {
	creds, err := s.dialCreds()
	if err != nil {
		return nil, err
	}
	return grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
}

func (s *Server) peerStatus(ctx context.Context, addr string) (*api.ServerStatusResponse, error) {
	conn, err := s.dialPeer(addr)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	return apirpc.NewOperatorClient(conn).ServerStatus(ctx, &api.ServerStatusRequest{})
}

func (s *Server) joinVia(ctx context.Context, addr string) error {
	conn, err := s.dialPeer(addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, err = apirpc.NewOperatorClient(conn).RaftJoin(ctx, &api.RaftJoinRequest{Server: s.self()})
	return err
}

// publishSelf keeps this server's API address in the replicated state, so
// followers can forward writes to whichever server leads. The leader
// writes its own record; a follower asks the leader through RaftJoin,
// which for a member only refreshes the record.
func (s *Server) publishSelf(ctx context.Context) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		me := s.self()
		rec := s.State().Server(me.Id)
		if s.raft.HasState() && (rec == nil || rec.RpcAddr != me.RpcAddr || rec.RaftAddr != me.RaftAddr || rec.MetricsAddr != me.MetricsAddr) {
			actx, cancel := context.WithTimeout(ctx, 5*time.Second)
			var err error
			if s.raft.IsLeader() {
				_, err = s.apply(actx, state.CmdServerMember, &api.ServerMembershipCommand{Server: me})
			} else {
				_, _, err = forward(s, actx, func(ctx context.Context, c *grpc.ClientConn) (*api.RaftJoinResponse, error) {
					return apirpc.NewOperatorClient(c).RaftJoin(ctx, &api.RaftJoinRequest{Server: me})
				})
			}
			cancel()
			if err != nil {
				s.log.Debug("publishing this server's address", "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
