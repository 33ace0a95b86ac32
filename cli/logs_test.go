package cli

import (
	"bytes"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/loomhpc/loom/api"
)

func chunk(rank uint32, s string) *api.LogChunk { return &api.LogChunk{Rank: rank, Data: []byte(s)} }

// interleaved is output of ranks 0 and 1 whose lines arrive in pieces.
var interleaved = []*api.LogChunk{
	chunk(0, "epoch 1 lo"),
	chunk(1, "epoch 1 loss 0.9\nepoch 2"),
	chunk(0, "ss 0.8\n"),
	chunk(1, " loss 0.7\n"),
	chunk(0, "no newline at end"),
}

func TestLogs(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		want    string
		wantReq *api.LogsRequest
	}{
		{
			name:    "all ranks are labelled",
			args:    []string{"12"},
			want:    "1: epoch 1 loss 0.9\n0: epoch 1 loss 0.8\n1: epoch 2 loss 0.7\n0: no newline at end\n",
			wantReq: &api.LogsRequest{JobId: 12, Rank: -1},
		},
		{
			name:    "one rank is not",
			args:    []string{"-f", "12", "1"},
			want:    "epoch 1 loss 0.9\nepoch 2 loss 0.7\n",
			wantReq: &api.LogsRequest{JobId: 12, Rank: 1, Follow: true},
		},
		{
			name:    "label forced for one rank",
			args:    []string{"--label", "--stderr", "12", "0"},
			want:    "0: epoch 1 loss 0.8\n0: no newline at end\n",
			wantReq: &api.LogsRequest{JobId: 12, Rank: 0, Stderr: true},
		},
		{
			name:    "single-rank job is not labelled",
			args:    []string{"11"},
			want:    "epoch 1 loepoch 1 loss 0.9\nepoch 2ss 0.8\n loss 0.7\nno newline at end",
			wantReq: &api.LogsRequest{JobId: 11, Rank: -1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeServer{jobs: testJobs(), logs: interleaved}
			te := newTestEnv("logs", f.start(t))
			if code := te.run(t, tt.args...); code != 0 {
				t.Fatalf("loom logs %q exited %d: %s", tt.args, code, te.err)
			}
			if got := te.out.String(); got != tt.want {
				t.Errorf("loom logs %q printed %q, want %q", tt.args, got, tt.want)
			}
			if len(f.logReqs) != 1 {
				t.Fatalf("loom logs %q made %d StreamLogs calls, want 1", tt.args, len(f.logReqs))
			}
			r := f.logReqs[0]
			if r.GetJobId() != tt.wantReq.JobId || r.GetRank() != tt.wantReq.Rank || r.GetFollow() != tt.wantReq.Follow || r.GetStderr() != tt.wantReq.Stderr {
				t.Errorf("loom logs %q sent %v, want %v", tt.args, r, tt.wantReq)
			}
		})
	}
}

func TestLogsErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		fail error
		want string
	}{
		{"unknown job", []string{"99"}, nil, "logs: error: job 99: no such job\n"},
		{"stream error", []string{"12", "0"}, status.Error(codes.FailedPrecondition, "node gpu01 is down; its logs are unavailable"),
			"logs: error: job 12: node gpu01 is down; its logs are unavailable\n"},
		{"no job", nil, nil, "logs: error: want JOBID and optionally RANK\nTry \"logs --help\" for more information\n"},
		{"bad rank", []string{"12", "-1x"}, nil, "logs: error: unrecognized option '-1'\nTry \"logs --help\" for more information\n"},
		{"bad rank word", []string{"12", "x"}, nil, "logs: error: invalid rank \"x\": want a number from 0\nTry \"logs --help\" for more information\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeServer{jobs: testJobs(), fail: tt.fail}
			te := newTestEnv("logs", f.start(t))
			if code := te.run(t, tt.args...); code != 1 {
				t.Errorf("loom logs %q exited %d, want 1", tt.args, code)
			}
			if got := te.err.String(); got != tt.want {
				t.Errorf("loom logs %q stderr = %q, want %q", tt.args, got, tt.want)
			}
		})
	}
}

// TestLogsFailover checks that a server that cannot serve the stream is
// skipped before any output.
func TestLogsFailover(t *testing.T) {
	bad := &fakeServer{fail: status.Error(codes.Unavailable, "shutting down")}
	good := &fakeServer{jobs: testJobs(), logs: interleaved}
	te := newTestEnv("logs", bad.start(t)+","+good.start(t))
	if code := te.run(t, "12", "1"); code != 0 {
		t.Fatalf("loom logs exited %d: %s", code, te.err)
	}
	if got, want := te.out.String(), "epoch 1 loss 0.9\nepoch 2 loss 0.7\n"; got != want {
		t.Errorf("loom logs after failover printed %q, want %q", got, want)
	}
}

func TestLabelWriter(t *testing.T) {
	var b bytes.Buffer
	lw := &labelWriter{w: &b, label: true, partial: map[uint32][]byte{}}
	for _, c := range []*api.LogChunk{chunk(3, "a\nb"), chunk(2, "x"), chunk(3, "c\n\n"), chunk(2, "y")} {
		if err := lw.write(c); err != nil {
			t.Fatal(err)
		}
	}
	if err := lw.flush(); err != nil {
		t.Fatal(err)
	}
	if got, want := b.String(), "3: a\n3: bc\n3: \n2: xy\n"; got != want {
		t.Errorf("labelWriter wrote %q, want %q", got, want)
	}
}

// TestLogsAgentUnavailable checks that a server's own Unavailable answer
// (an agent that is down) is reported as such, not as an unreachable
// server.
func TestLogsAgentUnavailable(t *testing.T) {
	f := &fakeServer{jobs: testJobs()}
	addr := f.start(t)
	f.fail = status.Error(codes.Unavailable, "node node1: agent not answering")
	te := newTestEnv("logs", addr)
	if code := te.run(t, "12", "0"); code != 1 {
		t.Errorf("loom logs exited %d, want 1", code)
	}
	if got, want := te.err.String(), "logs: error: job 12: "+addr+": node node1: agent not answering\n"; got != want {
		t.Errorf("loom logs stderr = %q, want %q", got, want)
	}
}
