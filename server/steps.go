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

// actOnJob fills a step request's uid with who the FSM acts as (actorFor:
// 0 for an operator, else the caller, whom the FSM compares with the
// job's owner when the command applies). The request's own user fields
// are never read.
func (s *Server) actOnJob(ctx context.Context, id uint64) (uint32, error) {
	return s.actorFor(ctx, []uint64{id})
}

func (js *jobService) CreateStep(ctx context.Context, req *api.CreateStepRequest) (*api.CreateStepResponse, error) {
	s := js.s
	if req.JobId == 0 {
		return nil, status.Error(codes.InvalidArgument, "job_id: not set")
	}
	if len(req.GetSpec().GetArgv()) == 0 {
		return nil, status.Error(codes.InvalidArgument, "spec.argv: a step needs a command")
	}
	uid, err := s.actOnJob(ctx, req.JobId)
	if err != nil {
		return nil, err
	}
	req.User, req.Uid = "", uid
	if resp, fwd, err := forward(s, ctx, func(ctx context.Context, c *grpc.ClientConn) (*api.CreateStepResponse, error) {
		return apirpc.NewJobServiceClient(c).CreateStep(ctx, req)
	}); fwd {
		return resp, err
	}
	res, err := s.apply(ctx, state.CmdCreateStep, &api.CreateStepCommand{Request: req, NowUnixMs: nowMs()})
	if err != nil {
		return nil, toStatus(err)
	}
	if res.Err != nil {
		return nil, toStatus(res.Err)
	}
	s.log.Debug("step created", "job_id", req.JobId, "step", api.StepName(res.StepID))
	return &api.CreateStepResponse{JobId: res.JobID, StepId: res.StepID, Index: res.Index}, nil
}

func (js *jobService) CancelSteps(ctx context.Context, req *api.CancelStepsRequest) (*api.CancelStepsResponse, error) {
	s := js.s
	uid, err := s.actOnJob(ctx, req.JobId)
	if err != nil {
		return nil, err
	}
	req.User, req.Uid = "", uid
	if resp, fwd, err := forward(s, ctx, func(ctx context.Context, c *grpc.ClientConn) (*api.CancelStepsResponse, error) {
		return apirpc.NewJobServiceClient(c).CancelSteps(ctx, req)
	}); fwd {
		return resp, err
	}
	res, err := s.apply(ctx, state.CmdCancelSteps, &api.CancelStepsCommand{Request: req, NowUnixMs: nowMs()})
	if err != nil {
		return nil, toStatus(err)
	}
	if res.Err != nil {
		return nil, toStatus(res.Err)
	}
	return &api.CancelStepsResponse{StepIds: res.StepIDs, Index: res.Index}, nil
}

func (js *jobService) CompleteAllocation(ctx context.Context, req *api.CompleteAllocationRequest) (*api.CompleteAllocationResponse, error) {
	s := js.s
	uid, err := s.actOnJob(ctx, req.JobId)
	if err != nil {
		return nil, err
	}
	req.User, req.Uid = "", uid
	if resp, fwd, err := forward(s, ctx, func(ctx context.Context, c *grpc.ClientConn) (*api.CompleteAllocationResponse, error) {
		return apirpc.NewJobServiceClient(c).CompleteAllocation(ctx, req)
	}); fwd {
		return resp, err
	}
	res, err := s.apply(ctx, state.CmdCompleteAllocation, &api.CompleteAllocationCommand{Request: req, NowUnixMs: nowMs()})
	if err != nil {
		return nil, toStatus(err)
	}
	if res.Err != nil {
		return nil, toStatus(res.Err)
	}
	return &api.CompleteAllocationResponse{Index: res.Index}, nil
}
