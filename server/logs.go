package server

import (
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/loomhpc/loom/api"
	"github.com/loomhpc/loom/api/apirpc"
	"github.com/loomhpc/loom/state"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// StreamLogs proxies a job's rank output, or a job step's task output,
// from the agents that ran it. Without a step, a batch job's output is its
// batch step's (the script's), and a gang's is its ranks'.
func (js *jobService) StreamLogs(req *api.LogsRequest, stream apirpc.JobService_StreamLogsServer) error {
	ctx := stream.Context()
	id, err := caller(ctx)
	if err != nil {
		return err
	}
	j := js.s.State().Job(req.JobId)
	if j == nil {
		return toStatus(fmt.Errorf("job %d: %w", req.JobId, state.ErrJobNotFound))
	}
	if !js.s.canSee(id, j, true) {
		return errNotYours(j)
	}
	a := j.GetAllocation()
	if a == nil {
		return status.Errorf(codes.FailedPrecondition, "job %d has not started yet (state %s): no output", j.Id, j.State)
	}
	step := req.Step
	if step == nil && j.Spec.RunsSteps() && !j.Spec.Interactive {
		b := api.StepBatch
		step = &b
	}
	what := fmt.Sprintf("job %d", j.Id)
	if step != nil {
		st := j.Step(*step)
		what = fmt.Sprintf("step %d.%s", j.Id, api.StepName(*step))
		if st == nil {
			return toStatus(fmt.Errorf("%s: %w", what, state.ErrStepNotFound))
		}
		if st.Allocation == nil {
			return status.Errorf(codes.FailedPrecondition, "%s has not started yet (it waits for resources): no output", what)
		}
		a = st.Allocation
	}
	if req.Rank >= int32(len(a.Ranks)) {
		return status.Errorf(codes.InvalidArgument, "rank %d: %s has ranks 0..%d", req.Rank, what, len(a.Ranks)-1)
	}
	byNode := map[string][]uint32{}
	var order []string
	for _, r := range a.Ranks {
		if req.Rank >= 0 && r.Rank != uint32(req.Rank) {
			continue
		}
		if _, ok := byNode[r.Node]; !ok {
			order = append(order, r.Node)
		}
		byNode[r.Node] = append(byNode[r.Node], r.Rank)
	}
	snap := js.s.State()
	var mu sync.Mutex // grpc streams allow one sender at a time
	var wg sync.WaitGroup
	errs := make([]error, len(order))
	for i, name := range order {
		n := snap.Node(name)
		if n == nil || n.Address == "" {
			errs[i] = status.Errorf(codes.Unavailable, "node %s has no agent address", name)
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = js.proxyLogs(stream, &mu, n, &api.TaskLogsRequest{
				JobId: j.Id, Generation: a.Generation, Ranks: byNode[name], Follow: req.Follow, Stderr: req.Stderr, Step: step,
			})
		}()
	}
	wg.Wait()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return errors.Join(errs...)
}

func (js *jobService) proxyLogs(out apirpc.JobService_StreamLogsServer, mu *sync.Mutex, n *api.Node, req *api.TaskLogsRequest) error {
	creds, err := js.s.agentCreds(n.Name)
	if err != nil {
		return status.Errorf(codes.Internal, "node %s: tls: %v", n.Name, err)
	}
	conn, err := grpc.NewClient(n.Address, grpc.WithTransportCredentials(creds))
	if err != nil {
		return status.Errorf(codes.Unavailable, "node %s: %v", n.Name, err)
	}
	defer conn.Close()
	in, err := apirpc.NewAgentLogsClient(conn).TaskLogs(out.Context(), req)
	if err != nil {
		return status.Errorf(codes.Unavailable, "node %s: %v", n.Name, err)
	}
	for {
		c, err := in.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			if st, ok := status.FromError(err); ok {
				return status.Errorf(st.Code(), "node %s: %s", n.Name, st.Message())
			}
			return err
		}
		mu.Lock()
		err = out.Send(c)
		mu.Unlock()
		if err != nil {
			return err
		}
	}
}
