package state

import (
	"errors"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/loomhpc/loom/api"
)

// TestUpdateJob checks scontrol update job's rules as Slurm states them:
// the owner or an operator changes a pending job; a user may only lower a
// time limit, an operator may raise it; a job that started keeps what it
// was given.
func TestUpdateJob(t *testing.T) {
	const alice, bob, operator = 1000, 1001, 0
	hour := int64(3600)
	tests := []struct {
		name    string
		uid     uint32
		job     uint64 // 1 runs, 2 pends (1 hour), 3 pends with the default limit, 4 is done
		req     *api.UpdateJobRequest
		wantErr error
		check   func(*api.JobSpec) bool
	}{
		{"owner lowers the time limit", alice, 2, &api.UpdateJobRequest{TimeLimitS: proto.Int64(hour / 2)}, nil,
			func(s *api.JobSpec) bool { return s.TimeLimitS == hour/2 }},
		{"owner may not raise it", alice, 2, &api.UpdateJobRequest{TimeLimitS: proto.Int64(2 * hour)}, ErrPermission, nil},
		{"owner may not make it unlimited", alice, 2, &api.UpdateJobRequest{TimeLimitS: proto.Int64(-1)}, ErrPermission, nil},
		{"operator raises it", operator, 2, &api.UpdateJobRequest{TimeLimitS: proto.Int64(2 * hour)}, nil,
			func(s *api.JobSpec) bool { return s.TimeLimitS == 2*hour }},
		{"under the configured default, lower is allowed", alice, 3, &api.UpdateJobRequest{TimeLimitS: proto.Int64(hour / 2)}, nil,
			func(s *api.JobSpec) bool { return s.TimeLimitS == hour/2 }},
		{"over the configured default is raising", alice, 3, &api.UpdateJobRequest{TimeLimitS: proto.Int64(3 * hour)}, ErrPermission, nil},
		{"another user", bob, 2, &api.UpdateJobRequest{Name: proto.String("mine")}, ErrPermission, nil},
		{"partition, QoS, nodes, name and comment", alice, 2, &api.UpdateJobRequest{
			Partition: proto.String("debug"), Qos: proto.String("high"), NodesMin: proto.Uint32(2), NodesMax: proto.Uint32(3),
			Name: proto.String("renamed"), Comment: proto.String("moved")}, nil,
			func(s *api.JobSpec) bool {
				return s.Partition == "debug" && s.Qos == "high" && s.NodesMin == 2 && s.NodesMax == 3 && s.Name == "renamed" && s.Comment == "moved"
			}},
		{"running: time limit, even by an operator", operator, 1, &api.UpdateJobRequest{TimeLimitS: proto.Int64(2 * hour)}, ErrStarted, nil},
		{"running: node count", alice, 1, &api.UpdateJobRequest{NodesMin: proto.Uint32(1)}, ErrStarted, nil},
		{"running: name and comment", alice, 1, &api.UpdateJobRequest{Name: proto.String("late"), Comment: proto.String("c")}, nil,
			func(s *api.JobSpec) bool { return s.Name == "late" && s.Comment == "c" }},
		{"finished", operator, 4, &api.UpdateJobRequest{Name: proto.String("x")}, ErrJobFinished, nil},
		{"nothing to change", alice, 2, &api.UpdateJobRequest{}, ErrNothingToUpdate, nil},
		{"no such job", operator, 99, &api.UpdateJobRequest{Name: proto.String("x")}, ErrJobNotFound, nil},
		{"no request", operator, 2, nil, ErrMalformedCommand, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := NewTestFSM()
			f.Apply(CmdSetConfig, &api.SetConfigCommand{Config: &api.ClusterConfig{Scheduler: &api.SchedulerSettings{DefaultTimeS: 2 * hour}}})
			twoNodeGang(f, &api.JobSpec{Script: "x", TimeLimitS: hour})              // 1, placed
			submit(f, "", &api.JobSpec{Script: "x", TimeLimitS: hour, Name: "pend"}) // 2
			submit(f, "", &api.JobSpec{Script: "x"})                                 // 3
			submit(f, "", &api.JobSpec{Script: "x"})                                 // 4
			f.Apply(CmdCancelJobs, &api.CancelJobsCommand{Request: &api.CancelRequest{JobIds: []uint64{4}, Uid: alice}})
			before := f.Store.View().Job(tt.job)

			if tt.req != nil {
				tt.req.JobId = tt.job
			}
			res := f.Apply(CmdUpdateJob, &api.UpdateJobCommand{Request: tt.req, Uid: tt.uid, NowUnixMs: 2000})
			after := f.Store.View().Job(tt.job)
			if tt.wantErr != nil {
				if !errors.Is(res.Err, tt.wantErr) {
					t.Fatalf("update = %v, want %v", res.Err, tt.wantErr)
				}
				if after != nil && !proto.Equal(after, before) {
					t.Errorf("refused update changed the job:\n%v\nwas\n%v", after, before)
				}
				return
			}
			if res.Err != nil {
				t.Fatalf("update = %v, want it applied", res.Err)
			}
			if !tt.check(after.Spec) {
				t.Errorf("after the update the spec is %v", after.Spec)
			}
			if after.State != before.State {
				t.Errorf("update moved the job from %s to %s", before.State, after.State)
			}
		})
	}
}

// TestUpdateJobArrayTask checks that updating one task of an array (whose
// tasks share a spec) leaves the other tasks as they were.
func TestUpdateJobArrayTask(t *testing.T) {
	f := NewTestFSM()
	submit(f, "", &api.JobSpec{Script: "x", Array: "0-1", TimeLimitS: 600})
	res := f.Apply(CmdUpdateJob, &api.UpdateJobCommand{Uid: 1000, Request: &api.UpdateJobRequest{JobId: 2, TimeLimitS: proto.Int64(60)}})
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	v := f.Store.View()
	if got1, got2 := v.Job(1).Spec.TimeLimitS, v.Job(2).Spec.TimeLimitS; got1 != 600 || got2 != 60 {
		t.Errorf("time limits after updating task 2 = %d, %d; want 600, 60", got1, got2)
	}
}
