package server

import (
	"context"
	"fmt"
	"math"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/loomhpc/loom/api"
	"github.com/loomhpc/loom/api/apirpc"
	"github.com/loomhpc/loom/scheduler"
	"github.com/loomhpc/loom/state"
)

// UpdateJob changes a job's settings (scontrol update job). The leader
// checks the changed spec as it checks a submit — valid, allowed QoS, able
// to run on the cluster's nodes — and the FSM decides who may change what.
func (js *jobService) UpdateJob(ctx context.Context, req *api.UpdateJobRequest) (*api.UpdateJobResponse, error) {
	s := js.s
	switch {
	case req.GetJobId() == 0:
		return nil, status.Error(codes.InvalidArgument, "job id: none given")
	case req.Empty():
		return nil, status.Errorf(codes.InvalidArgument, "job %d: %v", req.GetJobId(), state.ErrNothingToUpdate)
	}
	if resp, fwd, err := forward(s, ctx, func(ctx context.Context, c *grpc.ClientConn) (*api.UpdateJobResponse, error) {
		return apirpc.NewJobServiceClient(c).UpdateJob(ctx, req)
	}); fwd {
		return resp, err
	}
	uid, err := s.actorFor(ctx, []uint64{req.JobId})
	if err != nil {
		return nil, err
	}
	snap := s.State()
	j := snap.Job(req.JobId)
	if j == nil {
		return nil, toStatus(fmt.Errorf("job %d: %w", req.JobId, state.ErrJobNotFound))
	}
	spec := proto.Clone(j.Spec).(*api.JobSpec)
	req.ApplyTo(spec)
	if err := api.ValidateSpec(spec); err != nil {
		return nil, toStatus(fmt.Errorf("job %d: %w", req.JobId, err))
	}
	if req.Qos != nil {
		id, err := caller(ctx)
		if err != nil {
			return nil, err
		}
		if err := s.checkQOSAccess(id, spec.GetQos()); err != nil {
			return nil, err
		}
	}
	if req.ChangesResources() && j.State == api.JobState_PENDING {
		var nodes []*api.Node
		for n := range snap.Nodes() {
			nodes = append(nodes, n)
		}
		if err := s.feasible.check(snap, nodes, spec); err != nil {
			return nil, toStatus(fmt.Errorf("job %d: %w: %v", req.JobId, errInfeasible, err))
		}
	}
	res, err := s.apply(ctx, state.CmdUpdateJob, &api.UpdateJobCommand{Request: req, Uid: uid, NowUnixMs: nowMs()})
	if err != nil {
		return nil, toStatus(err)
	}
	if res.Err != nil {
		return nil, toStatus(res.Err)
	}
	s.log.Info("job updated", "job_id", req.JobId, "uid", uid)
	return &api.UpdateJobResponse{Index: res.Index}, nil
}

// TestSubmit answers when and where a job would start, without submitting
// it (sbatch --test-only): the leader checks it as it checks a submit and
// runs one scheduling cycle over its state with the job added, committing
// nothing.
func (js *jobService) TestSubmit(ctx context.Context, req *api.SubmitRequest) (*api.TestSubmitResponse, error) {
	s := js.s
	if err := api.ValidateSpec(req.Spec); err != nil {
		return nil, toStatus(err)
	}
	if err := s.authorizeSubmit(ctx, req); err != nil {
		return nil, err
	}
	if resp, fwd, err := forward(s, ctx, func(ctx context.Context, c *grpc.ClientConn) (*api.TestSubmitResponse, error) {
		return apirpc.NewJobServiceClient(c).TestSubmit(ctx, req)
	}); fwd {
		return resp, err
	}
	snap := s.State()
	var nodes []*api.Node
	for n := range snap.Nodes() {
		nodes = append(nodes, n)
	}
	if len(nodes) == 0 {
		return nil, toStatus(fmt.Errorf("%w: start an agent (loom agent) before submitting", errNoNodes))
	}
	if err := s.feasible.check(snap, nodes, req.Spec); err != nil {
		return nil, toStatus(fmt.Errorf("%w: %v", errInfeasible, err))
	}
	now := time.Now()
	// The trial plans from what the leader's cycle would: the replicated
	// configuration and the same view.
	var sc schedulerConfigCache
	cfg := sc.at(snap.Config(), s.cfg.Scheduler)
	view := schedulerView(snap, now, &cfg, &fairShareCache{archive: s.acct}, &historyCache{archive: s.acct})
	return testPlan(view, req, now, cfg), nil
}

// testJobID is the id the job of a TestSubmit has in its trial plan: one
// no real job reaches.
const testJobID = math.MaxUint64

// testPlan adds req's job to view and plans one cycle with cfg at now:
// the job's placement (a start now) or reservation (a later start), else
// the reason it would wait. A job placed beyond the top ReserveDepth gets
// no reservation, so a cycle that leaves it without one is run again with
// every pending job reserved for.
func testPlan(view *scheduler.View, req *api.SubmitRequest, now time.Time, cfg scheduler.Config) *api.TestSubmitResponse {
	j := &api.Job{Id: testJobID, Spec: req.Spec, User: req.User, Uid: req.Uid, Gid: req.Gid,
		State: api.JobState_PENDING, Reason: state.ReasonNone, SubmitUnixMs: now.UnixMilli()}
	if req.Spec.GetHold() {
		j.Reason = state.ReasonHeld
	}
	v := *view
	v.Jobs = append(append([]*api.Job(nil), view.Jobs...), j)
	resp := &api.TestSubmitResponse{Partition: req.Spec.PartitionOf()}
	for try := range 2 {
		if try == 1 {
			cfg.ReserveDepth = len(v.Jobs)
		}
		plan := scheduler.Schedule(&v, now, cfg)
		for _, p := range plan.Placements {
			if p.JobId == testJobID {
				resp.StartUnixMs, resp.Nodes = now.UnixMilli(), p.Allocation.GetNodes()
				for _, r := range p.Allocation.GetRanks() {
					resp.Cpus += r.GetCpus()
				}
				return resp
			}
		}
		for _, r := range plan.Reservations {
			if r.JobID == testJobID {
				resp.StartUnixMs, resp.Nodes = r.Start.UnixMilli(), r.Nodes
				if shape, ok := req.Spec.Layout(uint32(len(r.Nodes))); ok {
					for _, n := range shape {
						resp.Cpus += n.CPUs
					}
				}
				return resp
			}
		}
		for _, p := range plan.Pending {
			if p.JobId == testJobID {
				resp.Reason = p.Reason
			}
		}
	}
	return resp
}
