package rpcclient_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/loomhpc/loom/api"
	"github.com/loomhpc/loom/api/apiclient"
	"github.com/loomhpc/loom/api/apirpc"
	"github.com/loomhpc/loom/internal/harness"
	"github.com/loomhpc/loom/pki"
	"github.com/loomhpc/loom/rpcclient"
)

// The transport is checked against grpc-go's real server: whatever it
// gets wrong about HTTP/2 or gRPC's framing, grpc-go refuses.

// jobs is a JobService whose answers the tests choose.
type jobs struct {
	apirpc.UnimplementedJobServiceServer
	// ended receives the error of each call's context when a call that
	// waits for it (GetJob with id 2, StreamLogs with follow) ends.
	ended chan error
}

// bigName is the size of the job name GetJob(3) answers with: a response
// of 40 MB, over the stream and connection windows many times.
const bigName = 40 << 20

// oddMessage has what grpc-message must percent-encode.
const oddMessage = "job 12: naïve 100% \"quoted\"\r\n\ttab %41 ✓"

func (j *jobs) GetJob(ctx context.Context, req *api.GetJobRequest) (*api.GetJobResponse, error) {
	switch req.JobId {
	case 1: // echo the metadata and whether a deadline came
		md, _ := metadata.FromIncomingContext(ctx)
		_, hasDeadline := ctx.Deadline()
		name := strings.Join(md.Get("loom-munge"), ",")
		if hasDeadline {
			name += " deadline"
		}
		return &api.GetJobResponse{Job: &api.Job{Id: 1, Spec: &api.JobSpec{Name: name}}}, nil
	case 2: // wait for the caller to give up
		<-ctx.Done()
		j.ended <- ctx.Err()
		return nil, ctx.Err()
	case 3:
		return &api.GetJobResponse{Job: &api.Job{Id: 3, Spec: &api.JobSpec{Name: strings.Repeat("x", bigName)}}}, nil
	}
	return nil, status.Error(codes.NotFound, oddMessage)
}

func (j *jobs) StreamLogs(req *api.LogsRequest, stream grpc.ServerStreamingServer[api.LogChunk]) error {
	for i := range 3 {
		if err := stream.Send(&api.LogChunk{Rank: uint32(i), Data: bytes.Repeat([]byte{'a' + byte(i)}, 100<<10)}); err != nil {
			return err
		}
	}
	if req.Follow {
		<-stream.Context().Done()
		j.ended <- stream.Context().Err()
		return stream.Context().Err()
	}
	if req.Rank < 0 {
		return status.Error(codes.FailedPrecondition, "no such rank")
	}
	return nil
}

type operator struct {
	apirpc.UnimplementedOperatorServer
}

// SnapshotRestore answers with how many bytes it got in raft_index.
func (operator) SnapshotRestore(stream grpc.ClientStreamingServer[api.SnapshotChunk, api.SnapshotRestoreResponse]) error {
	n := 0
	for {
		c, err := stream.Recv()
		if err == io.EOF {
			return stream.SendAndClose(&api.SnapshotRestoreResponse{RaftIndex: uint64(n)})
		}
		if err != nil {
			return err
		}
		n += len(c.Data)
	}
}

// serve runs a grpc-go server with opts on lis until the test ends.
func serve(t *testing.T, lis net.Listener, opts ...grpc.ServerOption) *jobs {
	t.Helper()
	j := &jobs{ended: make(chan error, 4)}
	srv := grpc.NewServer(opts...)
	apirpc.RegisterJobServiceServer(srv, j)
	apirpc.RegisterOperatorServer(srv, operator{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(lis)
	}()
	t.Cleanup(func() {
		srv.Stop()
		<-done
	})
	return j
}

func listen(t *testing.T) net.Listener {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return lis
}

// dial returns stubs on a Conn to addr, closed when the test ends.
func dial(t *testing.T, addr string, opts rpcclient.Options) (apiclient.JobServiceClient, *rpcclient.Conn) {
	t.Helper()
	cc, err := rpcclient.New(addr, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return apiclient.NewJobServiceClient(cc), cc
}

func timeout(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// waitEnded waits (bounded) for the server to see a call's context end.
func waitEnded(t *testing.T, j *jobs, want error) {
	t.Helper()
	select {
	case err := <-j.ended:
		if err == nil || want != nil && !errors.Is(err, want) {
			t.Errorf("server's context ended with %v, want %v", err, want)
		}
	case <-time.After(30 * time.Second):
		t.Errorf("the server's call did not see its context end")
	}
}

func TestUnaryAndMetadata(t *testing.T) {
	lis := listen(t)
	serve(t, lis)
	md := func(_ context.Context, method string) (map[string]string, error) {
		return map[string]string{"loom-munge": "cred for " + method}, nil
	}
	c, _ := dial(t, lis.Addr().String(), rpcclient.Options{Metadata: md})
	for range 3 { // one connection, several calls
		resp, err := c.GetJob(timeout(t), &api.GetJobRequest{JobId: 1})
		if err != nil {
			t.Fatal(err)
		}
		if got, want := resp.Job.Spec.Name, "cred for /loom.v1.JobService/GetJob deadline"; got != want {
			t.Errorf("GetJob(1) name = %q, want %q", got, want)
		}
	}
}

// A credential that cannot be made fails the call before it is sent.
func TestMetadataError(t *testing.T) {
	lis := listen(t)
	serve(t, lis)
	md := func(context.Context, string) (map[string]string, error) {
		return nil, errors.New("munged is not running")
	}
	c, _ := dial(t, lis.Addr().String(), rpcclient.Options{Metadata: md})
	_, err := c.GetJob(timeout(t), &api.GetJobRequest{JobId: 1})
	if rpcclient.CodeOf(err) != rpcclient.Unauthenticated || !strings.Contains(err.Error(), "munged is not running") {
		t.Errorf("GetJob without a credential = %v, want Unauthenticated saying why", err)
	}
}

func TestErrorCodeAndMessage(t *testing.T) {
	lis := listen(t)
	serve(t, lis)
	c, _ := dial(t, lis.Addr().String(), rpcclient.Options{})
	_, err := c.GetJob(timeout(t), &api.GetJobRequest{JobId: 99})
	if rpcclient.CodeOf(err) != rpcclient.NotFound || rpcclient.MessageOf(err) != oddMessage {
		t.Errorf("GetJob(99) = %v (code %v, message %q), want NotFound %q", err, rpcclient.CodeOf(err), rpcclient.MessageOf(err), oddMessage)
	}
	// Unimplemented, from grpc-go itself.
	_, err = c.Submit(timeout(t), &api.SubmitRequest{})
	if rpcclient.CodeOf(err) != rpcclient.Unimplemented {
		t.Errorf("Submit = %v, want Unimplemented", err)
	}
}

func TestDeadline(t *testing.T) {
	lis := listen(t)
	j := serve(t, lis)
	c, _ := dial(t, lis.Addr().String(), rpcclient.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err := c.GetJob(ctx, &api.GetJobRequest{JobId: 2})
	if rpcclient.CodeOf(err) != rpcclient.DeadlineExceeded {
		t.Errorf("GetJob past its deadline = %v, want DeadlineExceeded", err)
	}
	// The server's context ended too: by grpc-timeout or by the client's
	// RST_STREAM, whichever came first.
	waitEnded(t, j, nil)
}

func TestCancelStream(t *testing.T) {
	lis := listen(t)
	j := serve(t, lis)
	c, _ := dial(t, lis.Addr().String(), rpcclient.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, err := c.StreamLogs(ctx, &api.LogsRequest{Follow: true})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, err := s.Recv(); err != nil {
			t.Fatalf("Recv %d: %v", i, err)
		}
	}
	cancel()
	if _, err := s.Recv(); rpcclient.CodeOf(err) != rpcclient.Canceled {
		t.Errorf("Recv after cancel = %v, want Canceled", err)
	}
	// RST_STREAM reached the server.
	waitEnded(t, j, context.Canceled)
}

func TestServerStream(t *testing.T) {
	lis := listen(t)
	serve(t, lis)
	c, _ := dial(t, lis.Addr().String(), rpcclient.Options{})
	for _, tt := range []struct {
		rank int32
		want rpcclient.Code
	}{{0, rpcclient.OK}, {-1, rpcclient.FailedPrecondition}} {
		s, err := c.StreamLogs(timeout(t), &api.LogsRequest{Rank: tt.rank})
		if err != nil {
			t.Fatal(err)
		}
		var got []byte
		for {
			chunk, err := s.Recv()
			if err != nil {
				if err != io.EOF && rpcclient.CodeOf(err) != tt.want || err == io.EOF && tt.want != rpcclient.OK {
					t.Errorf("StreamLogs(rank %d) ended with %v, want %v", tt.rank, err, tt.want)
				}
				break
			}
			got = append(got, chunk.Data...)
		}
		if want := 300 << 10; len(got) != want || got[0] != 'a' || got[len(got)-1] != 'c' {
			t.Errorf("StreamLogs(rank %d) = %d bytes, want %d: a…b…c", tt.rank, len(got), want)
		}
	}
}

func TestClientStream(t *testing.T) {
	lis := listen(t)
	serve(t, lis)
	cc, err := rpcclient.New(lis.Addr().String(), rpcclient.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	s, err := apiclient.NewOperatorClient(cc).SnapshotRestore(timeout(t))
	if err != nil {
		t.Fatal(err)
	}
	// 3 MB chunks: each waits for grpc-go's window updates.
	const chunks, size = 4, 3 << 20
	for range chunks {
		if err := s.Send(&api.SnapshotChunk{Data: make([]byte, size)}); err != nil {
			t.Fatal(err)
		}
	}
	resp, err := s.CloseAndRecv()
	if err != nil || resp.RaftIndex != chunks*size {
		t.Errorf("SnapshotRestore = %v, %v; want %d bytes received", resp, err, chunks*size)
	}
}

func TestLargeResponse(t *testing.T) {
	lis := listen(t)
	serve(t, lis)
	c, _ := dial(t, lis.Addr().String(), rpcclient.Options{MaxRecvBytes: api.MaxResponseBytes})
	resp, err := c.GetJob(timeout(t), &api.GetJobRequest{JobId: 3})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(resp.Job.Spec.Name); n != bigName {
		t.Errorf("GetJob(3) name of %d bytes, want %d", n, bigName)
	}
	// Over the limit: refused, not read.
	c, _ = dial(t, lis.Addr().String(), rpcclient.Options{MaxRecvBytes: 1 << 20})
	if _, err := c.GetJob(timeout(t), &api.GetJobRequest{JobId: 3}); rpcclient.CodeOf(err) != rpcclient.ResourceExhausted {
		t.Errorf("GetJob(3) with a 1 MB limit = %v, want ResourceExhausted", err)
	}
}

func TestMaxSend(t *testing.T) {
	lis := listen(t)
	serve(t, lis)
	c, _ := dial(t, lis.Addr().String(), rpcclient.Options{MaxSendBytes: 100})
	req := &api.GetJobRequest{JobId: 1, Consistent: true}
	if _, err := c.GetJob(timeout(t), req); err != nil {
		t.Errorf("GetJob under the send limit: %v", err)
	}
	_, err := c.ListJobs(timeout(t), &api.ListJobsRequest{User: strings.Repeat("u", 200)})
	if rpcclient.CodeOf(err) != rpcclient.ResourceExhausted {
		t.Errorf("ListJobs over the send limit = %v, want ResourceExhausted", err)
	}
}

func TestUnixSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "loom.sock")
	lis, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	serve(t, lis)
	c, _ := dial(t, "unix://"+path, rpcclient.Options{})
	if _, err := c.GetJob(timeout(t), &api.GetJobRequest{JobId: 1}); err != nil {
		t.Errorf("GetJob over %s: %v", path, err)
	}
}

func TestTLS(t *testing.T) {
	p := pki.NewTestPKI(t)
	srvCfg, err := pki.ServerConfig(p.Files(pki.RoleServer, "s1"), pki.ServerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	lis := listen(t)
	serve(t, lis, grpc.Creds(credentials.NewTLS(srvCfg)))
	cliCfg, err := pki.CLIClientConfig(pki.Files{CA: p.CA.CertFile})
	if err != nil {
		t.Fatal(err)
	}
	c, _ := dial(t, lis.Addr().String(), rpcclient.Options{TLS: cliCfg})
	if _, err := c.GetJob(timeout(t), &api.GetJobRequest{JobId: 1}); err != nil {
		t.Errorf("GetJob over TLS: %v", err)
	}
	// Another cluster's CA: the handshake fails, and that is Unavailable.
	other, err := pki.CLIClientConfig(pki.Files{CA: pki.NewTestPKI(t).CA.CertFile})
	if err != nil {
		t.Fatal(err)
	}
	c, _ = dial(t, lis.Addr().String(), rpcclient.Options{TLS: other})
	_, err = c.GetJob(timeout(t), &api.GetJobRequest{JobId: 1})
	if rpcclient.CodeOf(err) != rpcclient.Unavailable || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("GetJob with another CA = %v, want Unavailable about the certificate", err)
	}
	// Plaintext to a TLS server fails too.
	c, _ = dial(t, lis.Addr().String(), rpcclient.Options{})
	if _, err := c.GetJob(timeout(t), &api.GetJobRequest{JobId: 1}); rpcclient.CodeOf(err) != rpcclient.Unavailable {
		t.Errorf("plaintext GetJob to a TLS server = %v, want Unavailable", err)
	}
}

func TestConnectionRefused(t *testing.T) {
	lis := listen(t)
	addr := lis.Addr().String()
	lis.Close()
	c, _ := dial(t, addr, rpcclient.Options{})
	_, err := c.GetJob(timeout(t), &api.GetJobRequest{JobId: 1})
	if rpcclient.CodeOf(err) != rpcclient.Unavailable || !strings.HasPrefix(rpcclient.MessageOf(err), "connection error: ") {
		t.Errorf("GetJob to a closed port = %v, want Unavailable connection error", err)
	}
}

// A server that stops: the call in flight fails Unavailable, and the next
// call connects again.
func TestReconnect(t *testing.T) {
	lis := listen(t)
	addr := lis.Addr().String()
	srv := grpc.NewServer()
	apirpc.RegisterJobServiceServer(srv, &jobs{ended: make(chan error, 4)})
	go srv.Serve(lis)
	c, _ := dial(t, addr, rpcclient.Options{})
	if _, err := c.GetJob(timeout(t), &api.GetJobRequest{JobId: 1}); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	lis2, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("port %s taken again before the test could: %v", addr, err)
	}
	serve(t, lis2)
	// The old connection may still look usable until its read fails:
	// one Unavailable answer is allowed, as failover retries those.
	_, err = c.GetJob(timeout(t), &api.GetJobRequest{JobId: 1})
	if err != nil && rpcclient.CodeOf(err) == rpcclient.Unavailable {
		_, err = c.GetJob(timeout(t), &api.GetJobRequest{JobId: 1})
	}
	if err != nil {
		t.Errorf("GetJob after the server restarted: %v", err)
	}
}

func TestEncodeTimeout(t *testing.T) {
	// Through the exported path: a deadline far away still reaches the
	// server as a deadline (grpc-timeout's 8 digits).
	lis := listen(t)
	serve(t, lis)
	c, _ := dial(t, lis.Addr().String(), rpcclient.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 1000*time.Hour)
	defer cancel()
	resp, err := c.GetJob(ctx, &api.GetJobRequest{JobId: 1})
	if err != nil || !strings.HasSuffix(resp.GetJob().GetSpec().GetName(), " deadline") {
		t.Errorf("GetJob with a 1000 h deadline = %v, %v; want the server to see a deadline", resp, err)
	}
}

// A server that stops gracefully sends GOAWAY: the call in flight runs on,
// and new calls go to a new connection (here refused: the listener is
// closed), never onto the one that is going away.
func TestGoAway(t *testing.T) {
	lis := listen(t)
	j := &jobs{ended: make(chan error, 4)}
	srv := grpc.NewServer()
	apirpc.RegisterJobServiceServer(srv, j)
	served := make(chan struct{})
	go func() {
		defer close(served)
		srv.Serve(lis)
	}()
	defer func() {
		srv.Stop()
		<-served
	}()
	c, _ := dial(t, lis.Addr().String(), rpcclient.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, err := c.StreamLogs(ctx, &api.LogsRequest{Follow: true})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, err := s.Recv(); err != nil {
			t.Fatalf("Recv %d: %v", i, err)
		}
	}
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		srv.GracefulStop()
	}()
	harness.WaitFor(t, "a call after GOAWAY to be Unavailable", 30*time.Second, func() bool {
		_, err := c.GetJob(timeout(t), &api.GetJobRequest{JobId: 1})
		return rpcclient.CodeOf(err) == rpcclient.Unavailable
	})
	select {
	case <-stopped:
		t.Fatal("GracefulStop returned while a stream was open")
	default:
	}
	cancel()
	waitEnded(t, j, context.Canceled)
	select {
	case <-stopped:
	case <-time.After(30 * time.Second):
		t.Error("GracefulStop did not return once the stream ended")
	}
}
