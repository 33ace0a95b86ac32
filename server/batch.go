package server

import (
	"context"

	"github.com/loomhpc/loom/api"
	"github.com/loomhpc/loom/state"
	"google.golang.org/protobuf/proto"
)

// Group commit of submits: the leader's Submit handlers hand their
// requests to a worker, which takes everything queued and commits it as
// one SubmitJobs entry. Under load a Raft round trip then carries many
// jobs instead of one; with a single submit in flight it is one entry as
// before. One worker beat two and more in `loom bench submit` (1,550/s
// against 1,300/s with the bbolt log): batches in flight at once split the
// queue into smaller entries whose fsyncs then queue at the same disks.
//
// A batch is also cut at submitMaxBatchBytes of encoded requests, so that
// no entry comes near raftlog.MaxRecordBytes (1 GiB): 512 specs of
// api.MaxSpecBytes would be 3 GiB. A single request is at most
// api.MaxSpecBytes plus its envelope, far below it.
const (
	submitWorkers       = 1
	submitMaxBatch      = 512
	submitMaxBatchBytes = 64 << 20
)

type pendingSubmit struct {
	req  *api.SubmitRequest
	ctx  context.Context
	done chan submitResult
}

type submitResult struct {
	id, index uint64
	err       error
}

func (s *Server) startSubmitBatcher() {
	s.submitQ = make(chan *pendingSubmit, submitMaxBatch)
	for range submitWorkers {
		s.goFunc(s.submitWorker)
	}
}

func (s *Server) submitWorker() {
	for {
		var first *pendingSubmit
		select {
		case <-s.ctx.Done():
			return
		case first = <-s.submitQ:
		}
		batch := []*pendingSubmit{first}
		size := proto.Size(first.req)
	drain:
		for len(batch) < submitMaxBatch && size < submitMaxBatchBytes {
			select {
			case p := <-s.submitQ:
				batch = append(batch, p)
				size += proto.Size(p.req)
			default:
				break drain
			}
		}
		cmd := &api.SubmitJobsCommand{NowUnixMs: nowMs(), Limits: s.limits.submit()}
		var live []*pendingSubmit
		for _, p := range batch {
			if p.ctx.Err() != nil {
				p.done <- submitResult{err: p.ctx.Err()}
				continue
			}
			cmd.Requests = append(cmd.Requests, p.req)
			live = append(live, p)
		}
		if len(live) == 0 {
			continue
		}
		res, err := s.apply(s.ctx, state.CmdSubmitJobs, cmd)
		for i, p := range live {
			if err != nil {
				p.done <- submitResult{err: err}
				continue
			}
			if i < len(res.Errs) && res.Errs[i] != nil {
				p.done <- submitResult{err: res.Errs[i], index: res.Index}
				continue
			}
			p.done <- submitResult{id: res.JobIDs[i], index: res.Index}
		}
	}
}

// submitGrouped commits req with whatever other submits are queued.
func (s *Server) submitGrouped(ctx context.Context, req *api.SubmitRequest) (id, index uint64, err error) {
	p := &pendingSubmit{req: req, ctx: ctx, done: make(chan submitResult, 1)}
	select {
	case s.submitQ <- p:
	case <-ctx.Done():
		return 0, 0, ctx.Err()
	}
	// Once queued the outcome is awaited even past ctx: the entry may
	// commit, and the caller's retry with the same token will find it.
	select {
	case r := <-p.done:
		return r.id, r.index, r.err
	case <-ctx.Done():
		return 0, 0, ctx.Err()
	}
}

// Group commit of task reports, as of submits: the leader's UpdateTasks
// handlers hand the agents' reports to one worker, which commits
// everything queued as one UpdateTasksBatch entry (a lone report as the
// UpdateTasks entry it always was). An array's tasks or a gang's ranks
// start and end together on many nodes; one entry for their reports is
// one state change for the scheduling loop and the 64 allocation streams
// to look at, where one entry each was as many.
const reportMaxBatch = 512

type pendingReport struct {
	req  *api.TaskUpdateRequest
	ctx  context.Context
	done chan reportResult
}

type reportResult struct {
	index uint64
	err   error
}

func (s *Server) startReportBatcher() {
	s.reportQ = make(chan *pendingReport, reportMaxBatch)
	s.goFunc(s.reportWorker)
}

func (s *Server) reportWorker() {
	for {
		var first *pendingReport
		select {
		case <-s.ctx.Done():
			return
		case first = <-s.reportQ:
		}
		var live []*pendingReport
		for p := first; p != nil; {
			if p.ctx.Err() != nil {
				p.done <- reportResult{err: p.ctx.Err()}
			} else {
				live = append(live, p)
			}
			p = nil
			if len(live) < reportMaxBatch {
				select {
				case p = <-s.reportQ:
				default:
				}
			}
		}
		switch len(live) {
		case 0:
		case 1:
			p := live[0]
			res, err := s.apply(s.ctx, state.CmdUpdateTasks, &api.UpdateTasksCommand{Request: p.req, NowUnixMs: nowMs()})
			if err == nil {
				err = res.Err
			}
			var index uint64
			if res != nil {
				index = res.Index
			}
			p.done <- reportResult{index: index, err: err}
		default:
			cmd := &api.UpdateTasksBatchCommand{NowUnixMs: nowMs()}
			for _, p := range live {
				cmd.Requests = append(cmd.Requests, p.req)
			}
			res, err := s.apply(s.ctx, state.CmdUpdateTasksBatch, cmd)
			for i, p := range live {
				switch {
				case err != nil:
					p.done <- reportResult{err: err}
				case i < len(res.Errs) && res.Errs[i] != nil:
					p.done <- reportResult{index: res.Index, err: res.Errs[i]}
				default:
					p.done <- reportResult{index: res.Index}
				}
			}
		}
	}
}

// reportGrouped commits an agent's task report with whatever other
// reports are queued, and returns the index of the entry that held it.
func (s *Server) reportGrouped(ctx context.Context, req *api.TaskUpdateRequest) (uint64, error) {
	p := &pendingReport{req: req, ctx: ctx, done: make(chan reportResult, 1)}
	select {
	case s.reportQ <- p:
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	select {
	case r := <-p.done:
		return r.index, r.err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}
