package server

import (
	"context"

	"github.com/loomhpc/loom/api"
	"github.com/loomhpc/loom/api/apirpc"
	"github.com/loomhpc/loom/state"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

type agentService struct {
	apirpc.UnimplementedAgentServiceServer
	s *Server
}

func (as *agentService) Register(ctx context.Context, req *api.RegisterRequest) (*api.RegisterResponse, error) {
	n := req.GetNode()
	if n.GetName() == "" {
		return nil, status.Error(codes.InvalidArgument, "node.name: empty")
	}
	if err := api.CheckFeatures(n.GetFeatures()); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "node.features: %v", err)
	}
	if err := api.CheckNodeGres(n.GetGres()); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "node.gres: %v", err)
	}
	if err := as.s.checkAgentNode(ctx, n.GetName()); err != nil {
		return nil, err
	}
	if resp, fwd, err := forward(as.s, ctx, func(ctx context.Context, c *grpc.ClientConn) (*api.RegisterResponse, error) {
		return apirpc.NewAgentServiceClient(c).Register(ctx, req)
	}); fwd {
		return resp, err
	}
	res, err := as.s.apply(ctx, state.CmdRegisterNode, &api.RegisterNodeCommand{Node: n, NowUnixMs: nowMs()})
	if err != nil {
		return nil, toStatus(err)
	}
	as.s.log.Info("agent registered", "node", n.Name, "gpus", len(n.GetTopology().GetGpus()), "cpus", n.Cpus)
	return &api.RegisterResponse{Index: res.Index}, nil
}

// assignedTo returns the allocations node should run or stop. Only jobs
// whose allocations hold resources can have any (a job that runs holds
// them, one being stopped holds them until its tasks are gone), so the
// queue of pending jobs, however long, costs nothing here: every change
// of state runs this once for every agent.
func assignedTo(snap *state.View, node string) *api.AllocationUpdate {
	u := &api.AllocationUpdate{Index: snap.Index()}
	for j := range snap.HoldingJobs() {
		a := j.GetAllocation()
		if a == nil {
			continue
		}
		mine, unfinished := false, false
		for i, r := range a.Ranks {
			if r.Node == node {
				mine = true
				if !a.Tasks[i].Ended() {
					unfinished = true
				}
			}
		}
		if !mine || (!j.State.Active() && !unfinished) {
			continue
		}
		u.Allocations = append(u.Allocations, &api.AssignedAllocation{Job: j, Stop: !j.State.Active()})
	}
	return u
}

// WatchAllocations streams the node's full set of allocations each time it
// changes. Level-triggered: an agent that misses an update is corrected by
// the next, and a reconnecting agent gets the whole picture at once.
func (as *agentService) WatchAllocations(req *api.WatchAllocationsRequest, stream apirpc.AgentService_WatchAllocationsServer) error {
	if req.Node == "" {
		return status.Error(codes.InvalidArgument, "node: empty")
	}
	if err := as.s.checkAgentNode(stream.Context(), req.Node); err != nil {
		return err
	}
	var last *api.AllocationUpdate
	store := as.s.raft.Store()
	registered := false
	for {
		snap, changed := store.Changed()
		// A node that was in the state and is gone from it was taken out
		// by a snapshot restore (nothing else removes nodes): end the
		// stream, and the agent registers again as it reconnects.
		if snap.Node(req.Node) != nil {
			registered = true
		} else if registered {
			return status.Errorf(codes.Unavailable, "node %s is no longer in the cluster's state (a snapshot was restored): register it again", req.Node)
		}
		u := assignedTo(snap, req.Node)
		if last == nil || !sameAllocations(last, u) {
			if err := stream.Send(u); err != nil {
				return err
			}
			last = u
		}
		select {
		case <-changed:
		case <-stream.Context().Done():
			return stream.Context().Err()
		case <-as.s.ctx.Done():
			return status.Error(codes.Unavailable, "server shutting down")
		}
	}
}

func sameAllocations(a, b *api.AllocationUpdate) bool {
	if len(a.Allocations) != len(b.Allocations) {
		return false
	}
	for i := range a.Allocations {
		x, y := a.Allocations[i], b.Allocations[i]
		if x.Stop != y.Stop || x.Job.ModifyIndex != y.Job.ModifyIndex || x.Job.Id != y.Job.Id {
			return false
		}
	}
	return true
}

func (as *agentService) UpdateTasks(ctx context.Context, req *api.TaskUpdateRequest) (*api.TaskUpdateResponse, error) {
	if req.Node == "" || req.JobId == 0 {
		return nil, status.Error(codes.InvalidArgument, "node and job_id are required")
	}
	if err := as.s.checkAgentNode(ctx, req.Node); err != nil {
		return nil, err
	}
	if resp, fwd, err := forward(as.s, ctx, func(ctx context.Context, c *grpc.ClientConn) (*api.TaskUpdateResponse, error) {
		return apirpc.NewAgentServiceClient(c).UpdateTasks(ctx, req)
	}); fwd {
		return resp, err
	}
	index, err := as.s.reportGrouped(ctx, req)
	if err != nil {
		return nil, toStatus(err)
	}
	return &api.TaskUpdateResponse{Index: index}, nil
}
