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

type nodeService struct {
	apirpc.UnimplementedNodeServiceServer
	s *Server
}

// nodeInfo adds what allocations hold to a node and derives its state the
// way sinfo shows it: DRAIN/DOWN as set, else IDLE, MIXED or ALLOCATED.
func nodeInfo(n *api.Node, u *api.NodeUsage) *api.NodeInfo {
	info := &api.NodeInfo{Node: n, State: n.State}
	total := uint32(len(n.GetTopology().GetGpus()))
	if u != nil {
		info.GpusAllocated = uint32(len(u.GPUs))
		info.CpusAllocated = u.CPUs
		info.MemAllocatedMb = u.MemMB
		info.GresAllocated = u.Gres
		for id := range u.Jobs {
			info.JobIds = append(info.JobIds, id)
		}
	}
	if n.Schedulable() {
		switch {
		case info.GpusAllocated == 0 && info.CpusAllocated == 0:
			info.State = api.NodeState_IDLE
		case (total > 0 && info.GpusAllocated >= total) || info.CpusAllocated >= n.Cpus:
			info.State = api.NodeState_ALLOCATED
		default:
			info.State = api.NodeState_MIXED
		}
	}
	return info
}

func (ns *nodeService) ListNodes(ctx context.Context, req *api.ListNodesRequest) (*api.ListNodesResponse, error) {
	snap, local, err := ns.s.readState(ctx, req.MinIndex, req.Consistent)
	if !local {
		resp, _, err := forward(ns.s, ctx, func(ctx context.Context, c *grpc.ClientConn) (*api.ListNodesResponse, error) {
			return apirpc.NewNodeServiceClient(c).ListNodes(ctx, req)
		})
		return resp, err
	}
	if err != nil {
		return nil, err
	}
	usage := snap.Usage()
	resp := &api.ListNodesResponse{Index: snap.Index()}
	for n := range snap.Nodes() {
		resp.Nodes = append(resp.Nodes, nodeInfo(n, usage[n.Name]))
	}
	return resp, nil
}

func (ns *nodeService) GetNode(ctx context.Context, req *api.GetNodeRequest) (*api.NodeInfo, error) {
	snap := ns.s.State()
	n := snap.Node(req.Name)
	if n == nil {
		return nil, toStatus(fmt.Errorf("node %q: %w", req.Name, state.ErrNodeNotFound))
	}
	return nodeInfo(n, snap.Usage()[n.Name]), nil
}

func (ns *nodeService) setState(ctx context.Context, req *api.NodeStateRequest, st api.NodeState) (*api.NodeStateResponse, error) {
	if req.Name == "" {
		return nil, status.Error(codes.InvalidArgument, "nodename: no node named")
	}
	res, err := ns.s.apply(ctx, state.CmdNodeState, &api.NodeStateCommand{Name: req.Name, State: st, Reason: req.Reason, NowUnixMs: nowMs()})
	if err != nil {
		return nil, toStatus(err)
	}
	if res.Err != nil {
		return nil, toStatus(res.Err)
	}
	return &api.NodeStateResponse{Index: res.Index}, nil
}

func (ns *nodeService) DrainNode(ctx context.Context, req *api.NodeStateRequest) (*api.NodeStateResponse, error) {
	if req.Reason == "" {
		return nil, status.Error(codes.InvalidArgument, "reason: draining a node needs a reason (as in Slurm)")
	}
	if resp, fwd, err := forward(ns.s, ctx, func(ctx context.Context, c *grpc.ClientConn) (*api.NodeStateResponse, error) {
		return apirpc.NewNodeServiceClient(c).DrainNode(ctx, req)
	}); fwd {
		return resp, err
	}
	return ns.setState(ctx, req, api.NodeState_DRAIN)
}

func (ns *nodeService) ResumeNode(ctx context.Context, req *api.NodeStateRequest) (*api.NodeStateResponse, error) {
	if resp, fwd, err := forward(ns.s, ctx, func(ctx context.Context, c *grpc.ClientConn) (*api.NodeStateResponse, error) {
		return apirpc.NewNodeServiceClient(c).ResumeNode(ctx, req)
	}); fwd {
		return resp, err
	}
	return ns.setState(ctx, req, api.NodeState_IDLE)
}
