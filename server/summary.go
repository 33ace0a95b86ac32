package server

import (
	"github.com/loomhpc/loom/api"
	"github.com/loomhpc/loom/auth"
	"google.golang.org/protobuf/proto"
)

// summary returns j as a listing carries it: what squeue, sacct and
// scontrol print, without the script and environments (of the job and its
// steps) and never the secret, and with the private fields the caller may
// not see blanked as redact blanks them. Fields are shared with j, not
// copied (a listing of 10,000 jobs would otherwise copy every script);
// those it blanks it first copies.
func (s *Server) summary(id auth.Identity, j *api.Job) *api.Job {
	c := listedJob(j)
	if s.canSee(id, j, false) {
		return c
	}
	hide := func(sp *api.JobSpec) {
		if sp != nil {
			sp.Argv, sp.Output, sp.Error, sp.WorkingDir = nil, "", "", ""
		}
	}
	hideTasks := func(a *api.Allocation) *api.Allocation {
		if len(a.GetTasks()) == 0 {
			return a
		}
		a = proto.Clone(a).(*api.Allocation)
		for _, t := range a.Tasks {
			t.OutputPath = ""
		}
		return a
	}
	hide(c.Spec)
	c.Allocation = hideTasks(c.Allocation)
	for _, st := range c.Steps {
		hide(st.Spec)
		st.Allocation = hideTasks(st.Allocation)
	}
	return c
}

// queueSummary returns j as a LIST_VIEW_QUEUE listing carries it to id
// (api.Job.QueueView): squeue over 10,000 queued jobs then decodes less
// than half the bytes and a third of the strings of summaries.
func (s *Server) queueSummary(id auth.Identity, j *api.Job) *api.Job {
	return j.QueueView(s.canSee(id, j, false))
}

// listedJob is a new Job with j's fields but the secret, its spec and
// steps listed the same way. It is written out field by field because a
// listing makes one for every job it returns (reflection cost ten times
// as much); TestListedCarriesEveryField fails when a field added to the
// messages is missing here.
func listedJob(j *api.Job) *api.Job {
	c := &api.Job{
		Id: j.Id, Spec: listedSpec(j.Spec), User: j.User, Uid: j.Uid, Gid: j.Gid,
		State: j.State, Reason: j.Reason, Priority: j.Priority,
		SubmitUnixMs: j.SubmitUnixMs, StartUnixMs: j.StartUnixMs, EndUnixMs: j.EndUnixMs,
		Allocation: j.Allocation, ExitCode: j.ExitCode, ExitSignal: j.ExitSignal,
		RestartCount: j.RestartCount, SubmitHost: j.SubmitHost, IdempotencyToken: j.IdempotencyToken,
		CreateIndex: j.CreateIndex, ModifyIndex: j.ModifyIndex, ExpectedStartUnixMs: j.ExpectedStartUnixMs,
		ArrayJobId: j.ArrayJobId, ArrayTaskId: j.ArrayTaskId, NextStepId: j.NextStepId,
		AttainedGpuMs: j.AttainedGpuMs, PreemptCount: j.PreemptCount, UsedGpuMs: j.UsedGpuMs,
	}
	for _, st := range j.Steps {
		c.Steps = append(c.Steps, &api.Step{
			Id: st.Id, Spec: listedSpec(st.Spec), State: st.State, Reason: st.Reason,
			Allocation: st.Allocation, ExitCode: st.ExitCode, ExitSignal: st.ExitSignal,
			SubmitUnixMs: st.SubmitUnixMs, StartUnixMs: st.StartUnixMs, EndUnixMs: st.EndUnixMs,
			IdempotencyToken: st.IdempotencyToken, Signal: st.Signal, SignalCount: st.SignalCount,
		})
	}
	return c
}

// listedSpec is a new JobSpec with sp's fields but the script and the
// environment; nil for nil.
func listedSpec(sp *api.JobSpec) *api.JobSpec {
	if sp == nil {
		return nil
	}
	return &api.JobSpec{
		Name: sp.Name, NodesMin: sp.NodesMin, NodesMax: sp.NodesMax, Ntasks: sp.Ntasks,
		NtasksPerNode: sp.NtasksPerNode, CpusPerTask: sp.CpusPerTask, GpusPerNode: sp.GpusPerNode,
		GpusPerTask: sp.GpusPerTask, Gpus: sp.Gpus, GpuType: sp.GpuType, MemPerNodeMb: sp.MemPerNodeMb,
		TimeLimitS: sp.TimeLimitS, Partition: sp.Partition, Account: sp.Account, Qos: sp.Qos,
		Argv: sp.Argv, WorkingDir: sp.WorkingDir, Output: sp.Output, Error: sp.Error,
		Requeue: sp.Requeue, MaxRestarts: sp.MaxRestarts, Exclusive: sp.Exclusive,
		Dependency: sp.Dependency, Nice: sp.Nice, Image: sp.Image, Mounts: sp.Mounts, Array: sp.Array,
		BeginUnixMs: sp.BeginUnixMs, Hold: sp.Hold, Switches: sp.Switches, SwitchesWaitS: sp.SwitchesWaitS,
		Signal: sp.Signal, OpenMode: sp.OpenMode, Exclude: sp.Exclude, Nodelist: sp.Nodelist,
		EveryRank: sp.EveryRank, KillOnBadExit: sp.KillOnBadExit, Interactive: sp.Interactive,
		Overlap: sp.Overlap, Comment: sp.Comment, MailType: sp.MailType, MailUser: sp.MailUser,
		Constraint: sp.Constraint, MemPerCpuMb: sp.MemPerCpuMb, MemPerGpuMb: sp.MemPerGpuMb,
		CpusPerGpu: sp.CpusPerGpu, TimeMinS: sp.TimeMinS, CpuBind: sp.CpuBind,
		Reservation: sp.Reservation,
		GresPerNode: sp.GresPerNode,
		PrivateTmp:  sp.PrivateTmp, AllowSwap: sp.AllowSwap,
	}
}
