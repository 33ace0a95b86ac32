package cli

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/loomhpc/loom/api"
)

func (f *fakeServer) UpdateJob(_ context.Context, req *api.UpdateJobRequest) (*api.UpdateJobResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.updates = append(f.updates, proto.Clone(req).(*api.UpdateJobRequest))
	if f.fail != nil {
		return nil, f.fail
	}
	return &api.UpdateJobResponse{Index: 9}, nil
}

// TestScontrolUpdateJob checks that scontrol update job reads its keys as
// scontrol(1) documents them: JobId, TimeLimit (with +/- to add or
// remove time), Partition, QOS, NumNodes=min[-max], Name and Comment, in
// any case.
func TestScontrolUpdateJob(t *testing.T) {
	tests := []struct {
		args []string
		want []*api.UpdateJobRequest
	}{
		{[]string{"update", "jobid=13", "TimeLimit=1:30:00"},
			[]*api.UpdateJobRequest{{JobId: 13, TimeLimitS: proto.Int64(5400)}}},
		{[]string{"update", "JobId=13,14", "timelimit=UNLIMITED", "partition=debug"},
			[]*api.UpdateJobRequest{{JobId: 13, TimeLimitS: proto.Int64(-1), Partition: proto.String("debug")},
				{JobId: 14, TimeLimitS: proto.Int64(-1), Partition: proto.String("debug")}}},
		{[]string{"update", "JOBID=13", "QOS=high", "NumNodes=2-4", "Name=big2", "Comment=two to four"},
			[]*api.UpdateJobRequest{{JobId: 13, Qos: proto.String("high"), NodesMin: proto.Uint32(2), NodesMax: proto.Uint32(4),
				Name: proto.String("big2"), Comment: proto.String("two to four")}}},
		{[]string{"update", "NumNodes=3", "job=13", "JobName=x"},
			[]*api.UpdateJobRequest{{JobId: 13, NodesMin: proto.Uint32(3), NodesMax: proto.Uint32(3), Name: proto.String("x")}}},
		// Job 12's limit is 2:00:00: "-30" removes 30 minutes, "+1-0" adds a day.
		{[]string{"update", "jobid=12", "TimeLimit=-30"},
			[]*api.UpdateJobRequest{{JobId: 12, TimeLimitS: proto.Int64(5400)}}},
		{[]string{"update", "jobid=12", "TimeLimit=+1-0"},
			[]*api.UpdateJobRequest{{JobId: 12, TimeLimitS: proto.Int64(7200 + 86400)}}},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			f := &fakeServer{jobs: testJobs()}
			te := newTestEnv("scontrol", f.start(t))
			if code := te.run(t, tt.args...); code != 0 {
				t.Fatalf("scontrol %q exited %d: %s", tt.args, code, te.err)
			}
			if len(f.updates) != len(tt.want) {
				t.Fatalf("scontrol %q sent %v, want %v", tt.args, f.updates, tt.want)
			}
			for i := range tt.want {
				if !proto.Equal(f.updates[i], tt.want[i]) {
					t.Errorf("scontrol %q sent %v, want %v", tt.args, f.updates[i], tt.want[i])
				}
			}
		})
	}
}

func TestScontrolUpdateJobErrors(t *testing.T) {
	tests := []struct {
		args []string
		fail error
		want string
	}{
		{[]string{"update", "jobid=13"}, nil, "scontrol: error: update: nothing to change: give TimeLimit=, Partition=, QOS=, NumNodes=, Name= or Comment=\n"},
		{[]string{"update", "jobid=x", "Name=a"}, nil, "scontrol: error: update: jobid=x: invalid job id \"x\"\n"},
		{[]string{"update", "jobid=13", "TimeLimit=soon"}, nil, "scontrol: error: update: TimeLimit=soon: "},
		{[]string{"update", "jobid=13", "NumNodes=4-2"}, nil, "scontrol: error: update: NumNodes=4-2: maximum 2 is below minimum 4\n"},
		{[]string{"update", "jobid=13", "Features=ib"}, nil, "scontrol: error: update: unknown key \"Features\": Loom updates a job's TimeLimit, Partition, QOS, NumNodes, Name and Comment\n"},
		{[]string{"update", "jobid=13", "TimeLimit=+UNLIMITED"}, nil, "scontrol: error: update: TimeLimit=+UNLIMITED: UNLIMITED cannot be added or removed\n"},
		{[]string{"update", "jobid=13", "TimeLimit=+10"}, nil, "scontrol: error: job 13: TimeLimit: the job has no time limit of its own to add to or remove from; give one\n"},
		{[]string{"update", "jobid=12", "TimeLimit=-3:00:00"}, nil, "scontrol: error: job 12: TimeLimit: removing 3:00:00 from 2:00:00 leaves no time\n"},
		{[]string{"update", "jobid=12", "NumNodes=1"},
			status.Error(codes.FailedPrecondition, "job 12 is RUNNING: only a pending job's TimeLimit, Partition, QOS and NumNodes can be changed"),
			"scontrol: error: job 12 is RUNNING: only a pending job's TimeLimit, Partition, QOS and NumNodes can be changed\n"},
		{[]string{"update", "jobid=13", "TimeLimit=9:00:00"},
			status.Error(codes.PermissionDenied, "job 13: TimeLimit from 1:00:00 to 9:00:00: only an operator may raise a time limit: permission denied"),
			"scontrol: error: job 13: TimeLimit from 1:00:00 to 9:00:00: only an operator may raise a time limit: permission denied\n"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			f := &fakeServer{jobs: testJobs()}
			te := newTestEnv("scontrol", f.start(t))
			f.fail = tt.fail
			if code := te.run(t, tt.args...); code == 0 {
				t.Errorf("scontrol %q exited 0, want an error", tt.args)
			}
			if got := te.err.String(); !strings.HasPrefix(got, tt.want) {
				t.Errorf("scontrol %q stderr = %q, want %q", tt.args, got, tt.want)
			}
		})
	}
}
