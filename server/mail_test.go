package server

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/loomhpc/loom/api"
	"github.com/loomhpc/loom/internal/harness"
	"github.com/loomhpc/loom/state"
)

func TestMailEvents(t *testing.T) {
	job := func(types string, st api.JobState, start int64, restarts uint32) *api.Job {
		return &api.Job{Id: 7, User: "alice", State: st, StartUnixMs: start, RestartCount: restarts, SubmitUnixMs: 1000, EndUnixMs: 62000,
			Spec: &api.JobSpec{Name: "train", MailType: types}}
	}
	pending, running := api.JobState_PENDING, api.JobState_RUNNING
	tests := []struct {
		name      string
		prev, cur *api.Job
		want      []string // the events
	}{
		{"no mail type", job("", pending, 0, 0), job("", running, 2000, 0), nil},
		{"begin", job("BEGIN", pending, 0, 0), job("BEGIN", running, 2000, 0), []string{"Began"}},
		{"begin not asked", job("END", pending, 0, 0), job("END", running, 2000, 0), nil},
		{"end", job("END", running, 2000, 0), job("END", api.JobState_COMPLETED, 2000, 0), []string{"Ended"}},
		{"cancelled is an end, not a failure", job("FAIL", running, 2000, 0), job("FAIL", api.JobState_CANCELLED, 2000, 0), nil},
		{"fail", job("END,FAIL", running, 2000, 0), job("END,FAIL", api.JobState_TIMEOUT, 2000, 0), []string{"Failed"}},
		{"failure with only END", job("END", running, 2000, 0), job("END", api.JobState_FAILED, 2000, 0), []string{"Ended"}},
		{"all, started and ended at once", nil, job("ALL", api.JobState_COMPLETED, 2000, 0), []string{"Began", "Ended"}},
		{"requeue", job("REQUEUE", running, 2000, 0), job("REQUEUE", pending, 2000, 1), []string{"Requeued"}},
		{"NONE", job("NONE", pending, 0, 0), job("NONE", running, 2000, 0), nil},
		{"unchanged", job("ALL", running, 2000, 0), job("ALL", running, 2000, 0), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, m := range mailEvents(tt.prev, tt.cur) {
				got = append(got, m.event)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("mailEvents = %v, want %v", got, tt.want)
			}
		})
	}
	task := job("BEGIN", running, 2000, 0)
	task.ArrayJobId = 5
	if got := mailEvents(nil, task); len(got) != 0 {
		t.Errorf("an array task without ARRAY_TASKS mails %v, want nothing", got)
	}
	task.Spec.MailType = "BEGIN,ARRAY_TASKS"
	if got := mailEvents(nil, task); len(got) != 1 {
		t.Errorf("an array task with ARRAY_TASKS mails %v, want one", got)
	}
	m := mailEvents(job("END", running, 2000, 0), job("END", api.JobState_COMPLETED, 2000, 0))[0]
	if want := "Loom Job_id=7 Name=train Ended, Run time 1:00, COMPLETED, ExitCode 0"; m.subject != want || m.to != "alice" {
		t.Errorf("mail subject %q to %q, want %q to alice (the job's user when --mail-user is not given)", m.subject, m.to, want)
	}
}

// TestMailLoopRunsProg runs the leader's mail loop over a real state and a
// mail program that records its calls, as an admin would test MailProg.
func TestMailLoopRunsProg(t *testing.T) {
	dir := t.TempDir()
	calls := filepath.Join(dir, "calls")
	prog := filepath.Join(dir, "mail")
	script := "#!/bin/sh\necho \"$1|$2|$3|$SLURM_JOB_ID|$SLURM_JOB_MAIL_TYPE|$SLURM_JOB_STATE\" >> " + calls + "\n"
	if err := os.WriteFile(prog, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	f := state.NewTestFSM()
	s := &Server{log: slog.New(slog.DiscardHandler)}
	from := f.Store.View()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.mailLoop(ctx, prog, f.Store, from)
	}()
	t.Cleanup(func() { cancel(); <-done })

	f.Apply(state.CmdRegisterNode, &api.RegisterNodeCommand{Node: state.TestNode("n1", 1, 4)})
	f.Apply(state.CmdSubmitJob, &api.SubmitJobCommand{NowUnixMs: 1000, Request: &api.SubmitRequest{User: "alice", Uid: 1000,
		Spec: &api.JobSpec{Script: "x", Name: "mailed", MailType: "BEGIN,END", MailUser: "alice@example.org"}}})
	f.Apply(state.CmdSubmitJob, &api.SubmitJobCommand{NowUnixMs: 1000, Request: &api.SubmitRequest{User: "bob", Uid: 1001,
		Spec: &api.JobSpec{Script: "x", Name: "quiet"}}})
	f.Apply(state.CmdApplyPlan, &api.PlanCommand{NowUnixMs: 2000, Placements: []*api.Placement{{JobId: 1, Allocation: &api.Allocation{
		Nodes: []string{"n1"}, Ranks: []*api.Rank{{Node: "n1", GpuUuids: []string{"GPU-n1-0"}, Cpus: 1, Port: 29500}}}}}})
	f.Apply(state.CmdUpdateTasks, &api.UpdateTasksCommand{Request: &api.TaskUpdateRequest{Node: "n1", JobId: 1, Generation: 1,
		Tasks: []*api.TaskStatus{{Rank: 0, State: api.TaskState_TASK_RUNNING}}}})
	f.Apply(state.CmdCancelJobs, &api.CancelJobsCommand{NowUnixMs: 3000, Request: &api.CancelRequest{JobIds: []uint64{1, 2}}})

	var lines []string
	harness.WaitFor(t, "two mails", 10*time.Second, func() bool {
		b, _ := os.ReadFile(calls)
		lines = strings.Split(strings.TrimSpace(string(b)), "\n")
		return len(lines) >= 2
	})
	want := []string{
		"-s|Loom Job_id=1 Name=mailed Began, Queued time 0:01|alice@example.org|1|Began|",
		"-s|Loom Job_id=1 Name=mailed Ended, Run time 0:01, CANCELLED, ExitCode 0|alice@example.org|1|Ended|CANCELLED",
	}
	for i, w := range want {
		if !strings.HasPrefix(lines[i], w) {
			t.Errorf("mail program call %d = %q, want %q", i, lines[i], w)
		}
	}
	if len(lines) != 2 {
		t.Errorf("mail program called %d times, want 2: %q", len(lines), lines)
	}
}
