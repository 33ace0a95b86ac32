package cli

import (
	"bytes"
	"context"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/loomhpc/loom/api"
	"github.com/loomhpc/loom/api/apirpc"
	"github.com/loomhpc/loom/rpcclient"
)

// fakeServer is an in-memory JobService and NodeService that records what
// it is asked.
type fakeServer struct {
	apirpc.UnimplementedJobServiceServer
	apirpc.UnimplementedNodeServiceServer
	apirpc.UnimplementedOperatorServer

	mu        sync.Mutex
	jobs      []*api.Job
	nodes     []*api.NodeInfo
	logs      []*api.LogChunk
	submits   []*api.SubmitRequest
	cancels   []*api.CancelRequest
	lists     []*api.ListJobsRequest
	drains    []*api.NodeStateRequest
	resumes   []*api.NodeStateRequest
	logReqs   []*api.LogsRequest
	updates   []*api.UpdateJobRequest
	tests     []*api.SubmitRequest    // TestSubmit requests
	testResp  *api.TestSubmitResponse // TestSubmit's answer
	nextID    uint64
	fail      error                // returned by every call when set
	hang      bool                 // ListJobs waits for the caller to give up
	page      int                  // ListJobs pages by at most this many jobs; 0: one page
	cancelFn  func(id uint64) bool // which cancels succeed; nil: known, unfinished jobs
	config    *api.ClusterConfig   // GetConfig's answer; nil: none was set
	wholeJobs bool                 // ListJobs ignores the request's view and lists whole jobs
}

func (f *fakeServer) GetConfig(context.Context, *api.GetConfigRequest) (*api.GetConfigResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return &api.GetConfigResponse{Config: f.config}, nil
}

func (f *fakeServer) Submit(_ context.Context, req *api.SubmitRequest) (*api.SubmitResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.submits = append(f.submits, proto.Clone(req).(*api.SubmitRequest))
	if f.fail != nil {
		return nil, f.fail
	}
	f.nextID++
	return &api.SubmitResponse{JobId: f.nextID, Index: 7}, nil
}

func (f *fakeServer) Cancel(_ context.Context, req *api.CancelRequest) (*api.CancelResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cancels = append(f.cancels, proto.Clone(req).(*api.CancelRequest))
	if f.fail != nil {
		return nil, f.fail
	}
	resp := &api.CancelResponse{}
	for _, id := range req.GetJobIds() {
		ok := false
		if f.cancelFn != nil {
			ok = f.cancelFn(id)
		} else {
			i := slices.IndexFunc(f.jobs, func(j *api.Job) bool { return j.GetId() == id })
			if i < 0 {
				return nil, status.Errorf(codes.NotFound, "job %d: no such job", id)
			}
			ok = !f.jobs[i].GetState().Terminal()
		}
		if ok {
			resp.Cancelled = append(resp.Cancelled, id)
		}
	}
	return resp, nil
}

func (f *fakeServer) GetJob(_ context.Context, req *api.GetJobRequest) (*api.GetJobResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return nil, f.fail
	}
	for _, j := range f.jobs {
		if j.GetId() == req.GetJobId() {
			return &api.GetJobResponse{Job: j, Index: 9}, nil
		}
	}
	return nil, status.Errorf(codes.NotFound, "job %d: no such job", req.GetJobId())
}

// ListJobs returns every job, ignoring the filters, so that tests show
// the client filters by itself.
func (f *fakeServer) ListJobs(ctx context.Context, req *api.ListJobsRequest) (*api.ListJobsResponse, error) {
	if f.hang {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lists = append(f.lists, proto.Clone(req).(*api.ListJobsRequest))
	if f.fail != nil {
		return nil, f.fail
	}
	resp := &api.ListJobsResponse{Index: 9}
	if f.page == 0 {
		resp.Jobs = slices.Clone(f.jobs)
	} else {
		limit := min(f.page, int(req.GetLimit()))
		for _, j := range f.jobs {
			if j.GetId() <= req.GetAfterId() {
				continue
			}
			if len(resp.Jobs) == limit {
				resp.NextAfterId = resp.Jobs[limit-1].GetId()
				break
			}
			resp.Jobs = append(resp.Jobs, j)
		}
	}
	if req.GetView() == api.ListView_LIST_VIEW_QUEUE && !f.wholeJobs {
		// As the server lists them, so that squeue's tests fail when it
		// reads a field the view leaves out.
		listed := make([]*api.Job, len(resp.Jobs))
		for i, j := range resp.Jobs {
			listed[i] = j.QueueView(true)
			if i > 0 && api.SpecShared(resp.Jobs[i-1], j) {
				listed[i].Spec = nil
			}
		}
		resp.Jobs = listed
	}
	return resp, nil
}

func (f *fakeServer) StreamLogs(req *api.LogsRequest, stream grpc.ServerStreamingServer[api.LogChunk]) error {
	f.mu.Lock()
	f.logReqs = append(f.logReqs, proto.Clone(req).(*api.LogsRequest))
	fail, chunks := f.fail, f.logs
	f.mu.Unlock()
	if fail != nil {
		return fail
	}
	for _, c := range chunks {
		if req.GetRank() >= 0 && c.GetRank() != uint32(req.GetRank()) {
			continue
		}
		if err := stream.Send(c); err != nil {
			return err
		}
	}
	return nil
}

func (f *fakeServer) ListNodes(context.Context, *api.ListNodesRequest) (*api.ListNodesResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return nil, f.fail
	}
	return &api.ListNodesResponse{Nodes: f.nodes, Index: 3}, nil
}

func (f *fakeServer) GetNode(_ context.Context, req *api.GetNodeRequest) (*api.NodeInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return nil, f.fail
	}
	for _, n := range f.nodes {
		if n.GetNode().GetName() == req.GetName() {
			return n, nil
		}
	}
	return nil, status.Errorf(codes.NotFound, "node %q: no such node", req.GetName())
}

func (f *fakeServer) DrainNode(_ context.Context, req *api.NodeStateRequest) (*api.NodeStateResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.drains = append(f.drains, proto.Clone(req).(*api.NodeStateRequest))
	if f.fail != nil {
		return nil, f.fail
	}
	if !slices.ContainsFunc(f.nodes, func(n *api.NodeInfo) bool { return n.GetNode().GetName() == req.GetName() }) {
		return nil, status.Errorf(codes.NotFound, "node %q: no such node", req.GetName())
	}
	return &api.NodeStateResponse{Index: 4}, nil
}

func (f *fakeServer) ResumeNode(_ context.Context, req *api.NodeStateRequest) (*api.NodeStateResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.resumes = append(f.resumes, proto.Clone(req).(*api.NodeStateRequest))
	if f.fail != nil {
		return nil, f.fail
	}
	return &api.NodeStateResponse{Index: 5}, nil
}

// serveGRPC serves what register registers on a 127.0.0.1 port until the
// test ends and returns the address.
func serveGRPC(t testing.TB, register func(*grpc.Server)) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	register(srv)
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(lis)
	}()
	t.Cleanup(func() {
		srv.Stop()
		<-done
	})
	return lis.Addr().String()
}

// start serves f on a 127.0.0.1 port until the test ends and returns the
// address.
func (f *fakeServer) start(t testing.TB) string {
	t.Helper()
	return serveGRPC(t, func(srv *grpc.Server) {
		apirpc.RegisterJobServiceServer(srv, f)
		apirpc.RegisterNodeServiceServer(srv, f)
		apirpc.RegisterOperatorServer(srv, f)
	})
}

// deadAddr returns an address on which nothing listens.
func deadAddr(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	return addr
}

// testNow is the fixed clock of command tests.
var testNow = time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)

// ms is a Unix millisecond time the given duration before testNow.
func ms(before time.Duration) int64 { return testNow.Add(-before).UnixMilli() }

// testEnv is an env for running a command against addr as user alice in
// /home/alice/work on host login1.
type testEnv struct {
	*env
	out, err *bytes.Buffer
}

func newTestEnv(name, addr string, extraEnv ...string) testEnv {
	out, errb := &bytes.Buffer{}, &bytes.Buffer{}
	e := &env{
		name:        name,
		stdin:       strings.NewReader(""),
		stdout:      out,
		stderr:      errb,
		environ:     append([]string{"LOOM_ADDR=" + addr, "LOOM_TIMEOUT=20s", "HOME=/home/alice", "PATH=/usr/bin:/bin"}, extraEnv...),
		getwd:       func() (string, error) { return "/home/alice/work", nil },
		whoami:      func() (identity, error) { return identity{user: "alice", uid: 1000, gid: 1000}, nil },
		hostname:    func() (string, error) { return "login1", nil },
		now:         func() time.Time { return testNow },
		loc:         time.UTC,
		newToken:    func() string { return "token-1" },
		dialOptions: func(string) (rpcclient.Options, error) { return rpcclient.Options{}, nil },
	}
	return testEnv{e, out, errb}
}

func (te testEnv) run(t *testing.T, args ...string) int {
	t.Helper()
	return run(context.Background(), te.env, args)
}
