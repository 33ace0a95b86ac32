package server

import (
	"cmp"
	"context"
	"fmt"
	"iter"
	"slices"
	"time"

	"github.com/loomhpc/loom/api"
	"github.com/loomhpc/loom/api/apirpc"
	"github.com/loomhpc/loom/state"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

type jobService struct {
	apirpc.UnimplementedJobServiceServer
	s *Server
}

func (js *jobService) Submit(ctx context.Context, req *api.SubmitRequest) (*api.SubmitResponse, error) {
	s := js.s
	if err := api.ValidateSpec(req.Spec); err != nil {
		return nil, toStatus(err)
	}
	if err := s.authorizeSubmit(ctx, req); err != nil {
		return nil, err
	}
	snap := s.State()
	if req.IdempotencyToken != "" {
		if j := snap.JobByToken(req.IdempotencyToken); j != nil {
			return &api.SubmitResponse{JobId: j.Id, Index: snap.Index()}, nil
		}
	}
	if resp, fwd, err := forward(s, ctx, func(ctx context.Context, c *grpc.ClientConn) (*api.SubmitResponse, error) {
		return apirpc.NewJobServiceClient(c).Submit(ctx, req)
	}); fwd {
		return resp, err
	}
	// The FSM fixes the partition and its defaults again when it applies
	// the submit, under the configuration of that entry; refusing here
	// spares a Raft entry and checks what only this server can, the
	// caller's groups.
	spec, err := api.PartitionsOf(snap.Config()).ApplyPartition(req.Spec, api.SubmitCaller{User: req.User, InGroup: s.inGroup(ctx)})
	if err != nil {
		return nil, toStatus(err)
	}
	req.Spec = spec
	var nodes []*api.Node
	for n := range snap.Nodes() {
		nodes = append(nodes, n)
	}
	if len(nodes) == 0 {
		return nil, toStatus(fmt.Errorf("%w: start an agent (loom agent) before submitting", errNoNodes))
	}
	if err := checkReservation(snap, req, time.Now()); err != nil {
		return nil, err
	}
	if err := s.feasible.check(snap, nodes, req.Spec); err != nil {
		return nil, toStatus(fmt.Errorf("%w: %v", errInfeasible, err))
	}
	id, index, err := s.submitGrouped(ctx, req)
	if err != nil {
		return nil, toStatus(err)
	}
	s.log.Debug("job submitted", "job_id", id, "user", req.User, "uid", req.Uid, "name", req.Spec.Name)
	return &api.SubmitResponse{JobId: id, Index: index}, nil
}

func (js *jobService) Cancel(ctx context.Context, req *api.CancelRequest) (*api.CancelResponse, error) {
	return changeJobs(ctx, js.s, req.JobIds,
		func(ctx context.Context, c apirpc.JobServiceClient) (*api.CancelResponse, error) {
			return c.Cancel(ctx, req)
		},
		state.CmdCancelJobs, func(uid uint32) proto.Message {
			cmd := &api.CancelJobsCommand{Request: proto.Clone(req).(*api.CancelRequest), NowUnixMs: nowMs()}
			cmd.Request.Uid, cmd.Request.User = uid, js.s.userName(uid)
			return cmd
		},
		func(res *state.Result) *api.CancelResponse {
			return &api.CancelResponse{Cancelled: res.JobIDs, Index: res.Index}
		})
}

func (js *jobService) Hold(ctx context.Context, req *api.HoldRequest) (*api.HoldResponse, error) {
	return changeJobs(ctx, js.s, req.JobIds,
		func(ctx context.Context, c apirpc.JobServiceClient) (*api.HoldResponse, error) {
			return c.Hold(ctx, req)
		},
		state.CmdHoldJobs, func(uid uint32) proto.Message {
			return &api.HoldJobsCommand{JobIds: req.JobIds, Release: req.Release, Uid: uid, NowUnixMs: nowMs()}
		},
		func(res *state.Result) *api.HoldResponse {
			return &api.HoldResponse{JobIds: res.JobIDs, Index: res.Index}
		})
}

func (js *jobService) Requeue(ctx context.Context, req *api.RequeueRequest) (*api.RequeueResponse, error) {
	return changeJobs(ctx, js.s, req.JobIds,
		func(ctx context.Context, c apirpc.JobServiceClient) (*api.RequeueResponse, error) {
			return c.Requeue(ctx, req)
		},
		state.CmdRequeueJobs, func(uid uint32) proto.Message {
			return &api.RequeueJobsCommand{JobIds: req.JobIds, Uid: uid, NowUnixMs: nowMs()}
		},
		func(res *state.Result) *api.RequeueResponse {
			return &api.RequeueResponse{JobIds: res.JobIDs, Index: res.Index}
		})
}

// changeJobs is the path of the requests that change named jobs (cancel,
// hold, requeue): a follower forwards the request to the leader, which
// commits the command that cmd makes for the uid the caller acts as
// (actorFor) and answers with respond.
func changeJobs[Resp any](ctx context.Context, s *Server, ids []uint64,
	forwardTo func(context.Context, apirpc.JobServiceClient) (Resp, error),
	ct state.CommandType, cmd func(uid uint32) proto.Message, respond func(*state.Result) Resp) (Resp, error) {
	var zero Resp
	if len(ids) == 0 {
		return zero, status.Error(codes.InvalidArgument, "no job ids given")
	}
	if resp, fwd, err := forward(s, ctx, func(ctx context.Context, c *grpc.ClientConn) (Resp, error) {
		return forwardTo(ctx, apirpc.NewJobServiceClient(c))
	}); fwd {
		return resp, err
	}
	uid, err := s.actorFor(ctx, ids)
	if err != nil {
		return zero, err
	}
	res, err := s.apply(ctx, ct, cmd(uid))
	if err != nil {
		return zero, toStatus(err)
	}
	if res.Err != nil {
		return zero, toStatus(res.Err)
	}
	return respond(res), nil
}

// readAt returns a state at least as new as minIndex (read-your-writes).
func (s *Server) readAt(ctx context.Context, minIndex uint64) (*state.View, error) {
	if minIndex == 0 {
		return s.State(), nil
	}
	snap, err := s.raft.Store().WaitIndex(ctx, minIndex)
	if err != nil {
		return nil, toStatus(err)
	}
	return snap, nil
}

func (js *jobService) GetJob(ctx context.Context, req *api.GetJobRequest) (*api.GetJobResponse, error) {
	snap, local, err := js.s.readState(ctx, req.MinIndex, req.Consistent)
	if !local {
		resp, _, err := forward(js.s, ctx, func(ctx context.Context, c *grpc.ClientConn) (*api.GetJobResponse, error) {
			return apirpc.NewJobServiceClient(c).GetJob(ctx, req)
		})
		return resp, err
	}
	if err != nil {
		return nil, err
	}
	id, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	j := snap.Job(req.JobId)
	if j == nil {
		j = js.s.archivedJob(req.JobId)
	}
	if j == nil {
		return nil, toStatus(fmt.Errorf("job %d: %w", req.JobId, state.ErrJobNotFound))
	}
	return &api.GetJobResponse{Job: js.s.redact(id, j), Index: snap.Index()}, nil
}

func (js *jobService) ListJobs(ctx context.Context, req *api.ListJobsRequest) (*api.ListJobsResponse, error) {
	snap, local, err := js.s.readState(ctx, req.MinIndex, req.Consistent)
	if !local {
		resp, _, err := forward(js.s, ctx, func(ctx context.Context, c *grpc.ClientConn) (*api.ListJobsResponse, error) {
			return apirpc.NewJobServiceClient(c).ListJobs(ctx, req)
		})
		return resp, err
	}
	if err != nil {
		return nil, err
	}
	id, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	keep := func(j *api.Job) bool {
		if req.User != "" && j.User != req.User {
			return false
		}
		return len(req.States) == 0 || slices.Contains(req.States, j.State)
	}
	resp := &api.ListJobsResponse{Index: snap.Index()}
	// Jobs come in id order, so a page ends at an id and the next one
	// starts after it.
	for j := range js.listed(snap, req) {
		if !keep(j) {
			continue
		}
		if req.Limit > 0 && len(resp.Jobs) == int(req.Limit) {
			resp.NextAfterId = resp.Jobs[len(resp.Jobs)-1].Id
			break
		}
		resp.Jobs = append(resp.Jobs, j)
	}
	if viaGRPC(ctx) {
		if err := js.s.appendSummaries(id, req.View, snap, resp, resp.Jobs); err != nil {
			return nil, err
		}
		return resp, nil
	}
	for i, j := range resp.Jobs {
		resp.Jobs[i] = js.s.listedAs(id, req.View, j)
	}
	return resp, nil
}

// listed yields the jobs req names (its ids, else the user's or
// everyone's, active or all) after req.AfterId, in id order, from the
// index that holds them.
//
// Jobs that have left the live state come from the accounting store: a
// named one always, and with req.All the newest maxArchivedListed, merged
// into the same id order so that paging stays exact.
func (js *jobService) listed(snap *state.View, req *api.ListJobsRequest) iter.Seq[*api.Job] {
	if len(req.JobIds) == 0 {
		live := snap.JobsAfter(state.JobFilter{Active: !req.All, User: req.User, AfterID: req.AfterId})
		if !req.All {
			return live
		}
		old := js.s.archivedJobs(func(j *api.Job) bool {
			return j.Id > req.AfterId && (req.User == "" || j.User == req.User)
		})
		slices.SortFunc(old, func(a, b *api.Job) int { return cmp.Compare(a.Id, b.Id) })
		return mergeByID(live, old)
	}
	ids := slices.Clone(req.JobIds)
	slices.Sort(ids)
	ids = slices.Compact(ids)
	return func(yield func(*api.Job) bool) {
		for _, id := range ids {
			if id <= req.AfterId {
				continue
			}
			j := snap.Job(id)
			if j == nil {
				j = js.s.archivedJob(id)
			}
			if j != nil && !yield(j) {
				return
			}
		}
	}
}

// mergeByID yields live's jobs and old's (both in ascending id order) in
// one ascending order. A job in both (archived as the view was taken) is
// yielded once, from live.
func mergeByID(live iter.Seq[*api.Job], old []*api.Job) iter.Seq[*api.Job] {
	return func(yield func(*api.Job) bool) {
		for j := range live {
			for len(old) > 0 && old[0].Id <= j.Id {
				if old[0].Id < j.Id && !yield(old[0]) {
					return
				}
				old = old[1:]
			}
			if !yield(j) {
				return
			}
		}
		for _, j := range old {
			if !yield(j) {
				return
			}
		}
	}
}
