package state

import (
	"bytes"
	"errors"
	"runtime"
	"strings"
	"testing"

	"github.com/loomhpc/loom/api"
)

func submitAs(f *TestFSM, uid uint32, spec *api.JobSpec, lim *api.SubmitLimits) *Result {
	return f.Apply(CmdSubmitJobs, &api.SubmitJobsCommand{NowUnixMs: 1000, Limits: lim, Requests: []*api.SubmitRequest{
		{Spec: spec, User: map[uint32]string{1000: "alice", 1001: "bob"}[uid], Uid: uid, Gid: uid},
	}})
}

func TestSubmitLimits(t *testing.T) {
	one := &api.JobSpec{Script: "x"}
	tests := []struct {
		name  string
		lim   *api.SubmitLimits
		ready int    // jobs alice submits first (accepted)
		uid   uint32 // who submits the job under test
		spec  *api.JobSpec
		want  string // "" accepted, else the refusal
	}{
		{"job count at the limit", &api.SubmitLimits{MaxJobCount: 3}, 2, 1000, one, ""},
		{"job count one over", &api.SubmitLimits{MaxJobCount: 3}, 3, 1001, one,
			"MaxJobCount: the cluster holds 3 jobs and this submit adds 1; retry once finished jobs have aged out (min_job_age) (max_job_count = 3)"},
		{"an array counts its tasks", &api.SubmitLimits{MaxJobCount: 5}, 3, 1000, &api.JobSpec{Script: "x", Array: "0-2"},
			"MaxJobCount: the cluster holds 3 jobs and this submit adds 3"},
		{"per user at the limit", &api.SubmitLimits{MaxJobsPerUser: 2}, 1, 1000, one, ""},
		{"per user one over", &api.SubmitLimits{MaxJobsPerUser: 2}, 2, 1000, one,
			"MaxSubmitJobs: user alice has 2 unfinished jobs and this submit adds 1 (max_jobs_per_user = 2)"},
		{"per user: another user is not counted", &api.SubmitLimits{MaxJobsPerUser: 2}, 2, 1001, one, ""},
		{"array at MaxArraySize-1", &api.SubmitLimits{MaxArraySize: 1001}, 0, 1000, &api.JobSpec{Script: "x", Array: "0-1000"}, ""},
		{"array index at MaxArraySize", &api.SubmitLimits{MaxArraySize: 1001}, 0, 1000, &api.JobSpec{Script: "x", Array: "0,1001"},
			"MaxArraySize: --array=0,1001 has task index 1001; the largest allowed is 1000 (max_array_size = 1001)"},
		{"no limits (entries from before limits)", nil, 5, 1000, &api.JobSpec{Script: "x", Array: "0-5000"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := NewTestFSM()
			for range tt.ready {
				if res := submitAs(f, 1000, one, nil); res.Err != nil {
					t.Fatal(res.Err)
				}
			}
			before := f.Store.View()
			res := submitAs(f, tt.uid, tt.spec, tt.lim)
			err := res.Errs[0]
			if tt.want == "" {
				if err != nil || res.JobIDs[0] == 0 {
					t.Fatalf("submit = %d, %v; want accepted", res.JobIDs[0], err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) || !errors.Is(err, ErrLimit) {
				t.Fatalf("submit = %d, %v; want ErrLimit %q", res.JobIDs[0], err, tt.want)
			}
			after := f.Store.View()
			if after.NumJobs() != before.NumJobs() || after.NextJobID() != before.NextJobID() {
				t.Errorf("refused submit changed the state: %d jobs, next id %d; want %d, %d",
					after.NumJobs(), after.NextJobID(), before.NumJobs(), before.NextJobID())
			}
		})
	}
}

// TestPerUserCountFollowsJobs: finishing a job frees its slot.
func TestPerUserCountFollowsJobs(t *testing.T) {
	f := NewTestFSM()
	lim := &api.SubmitLimits{MaxJobsPerUser: 1}
	id := submitAs(f, 1000, &api.JobSpec{Script: "x"}, lim).JobIDs[0]
	if err := submitAs(f, 1000, &api.JobSpec{Script: "x"}, lim).Errs[0]; !errors.Is(err, ErrLimit) {
		t.Fatalf("second submit = %v, want ErrLimit", err)
	}
	f.Apply(CmdCancelJobs, &api.CancelJobsCommand{Request: &api.CancelRequest{JobIds: []uint64{id}}, NowUnixMs: 2000})
	if n := f.Store.View().UnfinishedJobs(1000); n != 0 {
		t.Fatalf("UnfinishedJobs(alice) after cancel = %d, want 0", n)
	}
	if err := submitAs(f, 1000, &api.JobSpec{Script: "x"}, lim).Errs[0]; err != nil {
		t.Fatalf("submit after cancel = %v, want accepted", err)
	}
}

func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

// TestArrayOfLargeScript: a 4 MiB script with --array=0-10000 is refused
// by MaxArraySize without building its tasks, and --array=0-1000 holds the
// script once: in the state, after the scheduler has touched every task,
// and in a snapshot.
func TestArrayOfLargeScript(t *testing.T) {
	script := strings.Repeat("#", api.MaxScriptBytes)
	lim := &api.SubmitLimits{MaxArraySize: 1001}
	f := NewTestFSM()
	base := heapInUse()
	res := submitAs(f, 1000, &api.JobSpec{Script: script, Array: "0-10000"}, lim)
	if !errors.Is(res.Errs[0], ErrLimit) || f.Store.View().NumJobs() != 0 {
		t.Fatalf("--array=0-10000 = %v with %d jobs; want MaxArraySize refused, no jobs", res.Errs[0], f.Store.View().NumJobs())
	}
	res = submitAs(f, 1000, &api.JobSpec{Script: script, Array: "0-1000"}, lim)
	if res.Errs[0] != nil {
		t.Fatal(res.Errs[0])
	}
	// The scheduler gives every task a pending reason: each is copied.
	plan := &api.PlanCommand{NowUnixMs: 2000}
	for j := range f.Store.View().Jobs() {
		plan.Pending = append(plan.Pending, &api.PendingReason{JobId: j.Id, Reason: "Resources"})
	}
	f.Apply(CmdApplyPlan, plan)
	var spec *api.JobSpec
	for j := range f.Store.View().Jobs() {
		if spec == nil {
			spec = j.Spec
		}
		if j.Spec != spec {
			t.Fatalf("job %d has its own copy of the array's spec", j.Id)
		}
	}
	snap, err := f.Store.View().Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if len(snap) > 2*api.MaxScriptBytes {
		t.Errorf("snapshot of a 1001-task array of a 4 MiB script = %d bytes, want the script once", len(snap))
	}
	g := NewTestFSM()
	if err := g.Restore(bytes.NewReader(snap)); err != nil {
		t.Fatal(err)
	}
	var restored *api.JobSpec
	for j := range g.Store.View().Jobs() {
		if restored == nil {
			restored = j.Spec
		}
		if j.Spec != restored || j.Spec.Script != script {
			t.Fatalf("restored job %d does not share the array's spec", j.Id)
		}
	}
	// Two states of 1001 tasks, one script each: far below 1001 copies.
	t.Logf("heap grew by %.1f MiB for a refused 0-10000 array and a 1001-task array of a 4 MiB script, planned and restored from a snapshot", float64(int64(heapInUse())-int64(base))/(1<<20))
	if grew := int64(heapInUse()) - int64(base); grew > 64<<20 {
		t.Errorf("heap grew by %d MiB for a refused and a 1001-task 4 MiB array, want under 64 MiB", grew>>20)
	}
	// Holding every task makes one changed copy, shared.
	var ids []uint64
	for j := range f.Store.View().Jobs() {
		ids = append(ids, j.Id)
	}
	f.Apply(CmdHoldJobs, &api.HoldJobsCommand{JobIds: ids, NowUnixMs: 3000})
	held := f.Store.View().Job(ids[0]).Spec
	for _, id := range ids {
		if s := f.Store.View().Job(id).Spec; s != held || !s.Hold {
			t.Fatalf("held job %d: spec shared %v, hold %v; want one shared held spec", id, s == held, s.Hold)
		}
	}
	if spec.Hold {
		t.Fatal("hold changed the spec the earlier state holds")
	}
}

func TestExpireJobs(t *testing.T) {
	f := NewTestFSM()
	arch := &MemArchive{}
	f.SetArchive(arch)
	done := submit(f, "tok-done", &api.JobSpec{Script: "x"}).JobID
	pending := submit(f, "", &api.JobSpec{Script: "x"}).JobID
	f.Apply(CmdCancelJobs, &api.CancelJobsCommand{Request: &api.CancelRequest{JobIds: []uint64{done}}, NowUnixMs: 10_000})
	const age = 300_000
	expire := func(now int64) *Result {
		return f.Apply(CmdExpireJobs, &api.ExpireJobsCommand{JobIds: []uint64{done, pending, 99}, NowUnixMs: now, MinJobAgeMs: age})
	}
	if res := expire(10_000 + age - 1); len(res.JobIDs) != 0 {
		t.Fatalf("expire 1 ms before MinJobAge = %v, want none", res.JobIDs)
	}
	if f.Store.View().Job(done) == nil {
		t.Fatal("job expired before MinJobAge")
	}
	res := expire(10_000 + age)
	if len(res.JobIDs) != 1 || res.JobIDs[0] != done {
		t.Fatalf("expire at MinJobAge = %v, want [%d] (the pending job and an unknown id stay)", res.JobIDs, done)
	}
	v := f.Store.View()
	if v.Job(done) != nil || v.JobByToken("tok-done") != nil || v.NumJobs() != 1 {
		t.Fatalf("after expiry: job %v, by token %v, %d jobs; want gone, gone, 1", v.Job(done), v.JobByToken("tok-done"), v.NumJobs())
	}
	if v.Job(pending) == nil || v.UnfinishedJobs(1000) != 1 {
		t.Fatalf("pending job %v, unfinished %d; want kept, 1", v.Job(pending), v.UnfinishedJobs(1000))
	}
	if j := arch.Jobs[done]; j == nil || j.State != api.JobState_CANCELLED {
		t.Fatalf("archive holds %v for job %d, want the cancelled job", j, done)
	}
	// A snapshot after expiry restores without the job; ids go on.
	b, err := v.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	g := NewTestFSM()
	if err := g.Restore(bytes.NewReader(b)); err != nil {
		t.Fatal(err)
	}
	if g.Store.View().NumJobs() != 1 || g.Store.View().NextJobID() != 3 || g.Store.View().UnfinishedJobs(1000) != 1 {
		t.Fatalf("restored: %d jobs, next id %d, unfinished %d; want 1, 3, 1",
			g.Store.View().NumJobs(), g.Store.View().NextJobID(), g.Store.View().UnfinishedJobs(1000))
	}
}

// The replicated configuration's max_time and QoS limits refuse submits
// in the FSM, naming the QoS and the limit.
func TestConfigSubmitLimits(t *testing.T) {
	cfg := &api.ClusterConfig{
		Scheduler: &api.SchedulerSettings{MaxTimeS: 86400},
		Qos:       []*api.QOSConfig{{Name: "short", MaxWallS: 3600, MaxSubmitPerUser: 2}},
	}
	lim := &api.SubmitLimits{}
	tests := []struct {
		name  string
		ready int // jobs alice submits first in QoS short
		spec  *api.JobSpec
		want  string
	}{
		{"no time limit given", 0, &api.JobSpec{Script: "x"}, ""},
		{"at max_time", 0, &api.JobSpec{Script: "x", TimeLimitS: 86400}, ""},
		{"over max_time", 0, &api.JobSpec{Script: "x", TimeLimitS: 86401},
			"MaxTime: --time=1-00:00:01 is above the cluster's maximum time limit ([scheduler] max_time = 1-00:00:00)"},
		{"UNLIMITED under max_time", 0, &api.JobSpec{Script: "x", TimeLimitS: api.Unlimited}, "MaxTime: --time=UNLIMITED"},
		{"over the QoS max_wall", 0, &api.JobSpec{Script: "x", Qos: "short", TimeLimitS: 7200},
			`QOSMaxWallDurationPerJobLimit: --time=2:00:00 is above QoS short's MaxWall ([[qos]] "short" max_wall = 1:00:00)`},
		{"other QoS: no max_wall", 0, &api.JobSpec{Script: "x", Qos: "long", TimeLimitS: 7200}, ""},
		{"max_submit at the limit", 1, &api.JobSpec{Script: "x", Qos: "short"}, ""},
		{"max_submit one over", 2, &api.JobSpec{Script: "x", Qos: "short"},
			`QOSMaxSubmitJobPerUserLimit: user alice has 2 unfinished jobs in QoS short and this submit adds 1 ([[qos]] "short" max_submit_jobs_per_user = 2)`},
		{"max_submit counts array tasks", 1, &api.JobSpec{Script: "x", Qos: "short", Array: "0-1"}, "QOSMaxSubmitJobPerUserLimit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := NewTestFSM()
			if res := f.Apply(CmdSetConfig, &api.SetConfigCommand{Config: cfg}); res.Err != nil {
				t.Fatal(res.Err)
			}
			for range tt.ready {
				if res := submitAs(f, 1000, &api.JobSpec{Script: "x", Qos: "short"}, lim); res.Errs[0] != nil {
					t.Fatal(res.Errs[0])
				}
			}
			res := submitAs(f, 1000, tt.spec, lim)
			err := res.Errs[0]
			if tt.want == "" {
				if err != nil {
					t.Fatalf("submit: %v; want accepted", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) || !errors.Is(err, ErrLimit) {
				t.Fatalf("submit: %v; want a limit error containing %q", err, tt.want)
			}
		})
	}
}
