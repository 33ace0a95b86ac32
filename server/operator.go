package server

import (
	"context"
	"fmt"

	"github.com/loomhpc/loom/api"
	"github.com/loomhpc/loom/api/apirpc"
	"github.com/loomhpc/loom/state"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

type operatorService struct {
	apirpc.UnimplementedOperatorServer
	s *Server
}

// RaftJoin adds a server to the cluster (or refreshes where its API is).
func (os *operatorService) RaftJoin(ctx context.Context, req *api.RaftJoinRequest) (*api.RaftJoinResponse, error) {
	sv := req.GetServer()
	if sv.GetId() == "" || sv.GetRaftAddr() == "" || sv.GetRpcAddr() == "" {
		return nil, status.Error(codes.InvalidArgument, "server: id, raft_addr and rpc_addr are required")
	}
	s := os.s
	if resp, fwd, err := forward(s, ctx, func(ctx context.Context, c *grpc.ClientConn) (*api.RaftJoinResponse, error) {
		return apirpc.NewOperatorClient(c).RaftJoin(ctx, req)
	}); fwd {
		return resp, err
	}
	peers, err := s.raft.Peers()
	if err != nil {
		return nil, toStatus(err)
	}
	present := false
	for _, p := range peers {
		if p.ID == sv.Id && p.Addr == sv.RaftAddr {
			present = true
		}
	}
	if !present {
		if err := s.raft.AddVoter(ctx, sv.Id, sv.RaftAddr); err != nil {
			return nil, toStatus(fmt.Errorf("add %s (%s) to the cluster: %w", sv.Id, sv.RaftAddr, err))
		}
		s.log.Info("server joined the cluster", "id", sv.Id, "raft_addr", sv.RaftAddr)
	}
	res, err := s.apply(ctx, state.CmdServerMember, &api.ServerMembershipCommand{Server: sv})
	if err != nil {
		return nil, toStatus(err)
	}
	return &api.RaftJoinResponse{Index: res.Index}, nil
}

func (os *operatorService) RaftListPeers(ctx context.Context, req *api.RaftListPeersRequest) (*api.RaftListPeersResponse, error) {
	s := os.s
	peers, err := s.raft.Peers()
	if err != nil {
		return nil, toStatus(err)
	}
	snap := s.State()
	_, leader := s.raft.Leader()
	resp := &api.RaftListPeersResponse{Index: snap.Index()}
	for _, p := range peers {
		info := &api.ServerInfo{Id: p.ID, RaftAddr: p.Addr, Voter: p.Voter, Leader: p.ID == leader}
		if rec := snap.Server(p.ID); rec != nil {
			info.RpcAddr = rec.RpcAddr
		}
		resp.Servers = append(resp.Servers, info)
	}
	return resp, nil
}

func (os *operatorService) RaftRemovePeer(ctx context.Context, req *api.RaftRemovePeerRequest) (*api.RaftRemovePeerResponse, error) {
	if req.Id == "" {
		return nil, status.Error(codes.InvalidArgument, "id: name the server to remove")
	}
	s := os.s
	if resp, fwd, err := forward(s, ctx, func(ctx context.Context, c *grpc.ClientConn) (*api.RaftRemovePeerResponse, error) {
		return apirpc.NewOperatorClient(c).RaftRemovePeer(ctx, req)
	}); fwd {
		return resp, err
	}
	peers, err := s.raft.Peers()
	if err != nil {
		return nil, toStatus(err)
	}
	found := false
	for _, p := range peers {
		found = found || p.ID == req.Id
	}
	if !found {
		return nil, status.Errorf(codes.NotFound, "no server %q in the Raft configuration", req.Id)
	}
	if err := s.raft.RemoveServer(ctx, req.Id); err != nil {
		return nil, toStatus(err)
	}
	res, err := s.apply(ctx, state.CmdServerMember, &api.ServerMembershipCommand{Server: &api.ServerInfo{Id: req.Id}, Remove: true})
	if err != nil {
		return nil, toStatus(err)
	}
	s.log.Info("server removed from the cluster", "id", req.Id)
	return &api.RaftRemovePeerResponse{Index: res.Index}, nil
}

func (os *operatorService) ServerStatus(ctx context.Context, req *api.ServerStatusRequest) (*api.ServerStatusResponse, error) {
	s := os.s
	snap := s.State()
	hash, err := snap.Hash()
	if err != nil {
		return nil, toStatus(err)
	}
	_, leader := s.raft.Leader()
	var term uint64
	fmt.Sscan(s.raft.Stats()["term"], &term)
	return &api.ServerStatusResponse{
		Server:       s.self(),
		HasState:     s.raft.HasState(),
		LeaderId:     leader,
		AppliedIndex: snap.Index(),
		Term:         term,
		StateHash:    hash,
	}, nil
}

// GetConfig returns the cluster configuration this server holds: the
// replicated one, the same on every server once it has applied the entry
// that set it.
func (os *operatorService) GetConfig(ctx context.Context, req *api.GetConfigRequest) (*api.GetConfigResponse, error) {
	v := os.s.State()
	return &api.GetConfigResponse{Config: v.Config(), Index: v.Index()}, nil
}
