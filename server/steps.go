package server

import (
	"context"
	"fmt"

	"github.com/loomhpc/loom/api"
	"github.com/loomhpc/loom/state"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// caller is who makes a request, as the request says today (the CLI sends
// its uid). The auth work replaces where it comes from; mayActOn is the
// one place that decides what it may do.
type caller struct {
	user string
	uid  uint32
}

// mayActOn says whether c may start, cancel, signal or end steps of job
// id: its owner or an operator (uid 0). The FSM checks again when the
// command applies, on the state it applies to.
func mayActOn(snap *state.View, c caller, id uint64) error {
	j := snap.Job(id)
	switch {
	case j == nil:
		return fmt.Errorf("job %d: %w", id, state.ErrJobNotFound)
	case c.uid != 0 && c.uid != j.Uid:
		return fmt.Errorf("job %d belongs to %s, not %s: %w", id, j.User, c.user, state.ErrPermission)
	}
	return nil
}

func (js *jobService) CreateStep(ctx context.Context, req *api.CreateStepRequest) (*api.CreateStepResponse, error) {
	s := js.s
	if req.JobId == 0 {
		return nil, status.Error(codes.InvalidArgument, "job_id: not set")
	}
	if len(req.GetSpec().GetArgv()) == 0 {
		return nil, status.Error(codes.InvalidArgument, "spec.argv: a step needs a command")
	}
	if err := mayActOn(s.State(), caller{req.User, req.Uid}, req.JobId); err != nil {
		return nil, toStatus(err)
	}
	if resp, fwd, err := forward(s, ctx, func(ctx context.Context, c *grpc.ClientConn) (*api.CreateStepResponse, error) {
		return api.NewJobServiceClient(c).CreateStep(ctx, req)
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
	if err := mayActOn(s.State(), caller{req.User, req.Uid}, req.JobId); err != nil {
		return nil, toStatus(err)
	}
	if resp, fwd, err := forward(s, ctx, func(ctx context.Context, c *grpc.ClientConn) (*api.CancelStepsResponse, error) {
		return api.NewJobServiceClient(c).CancelSteps(ctx, req)
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
	if err := mayActOn(s.State(), caller{req.User, req.Uid}, req.JobId); err != nil {
		return nil, toStatus(err)
	}
	if resp, fwd, err := forward(s, ctx, func(ctx context.Context, c *grpc.ClientConn) (*api.CompleteAllocationResponse, error) {
		return api.NewJobServiceClient(c).CompleteAllocation(ctx, req)
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
