package api

// QueueView returns a new Job with what a LIST_VIEW_QUEUE listing carries
// of j (ListView's comment names the fields): what squeue's columns,
// filters and sort keys read, of each rank only its CPUs, and the working
// directory only when private (the caller may see j's private fields).
// Fields are shared with j, not copied.
func (j *Job) QueueView(private bool) *Job {
	c := &Job{
		Id: j.Id, User: j.User, Uid: j.Uid, State: j.State, Reason: j.Reason, Priority: j.Priority,
		SubmitUnixMs: j.SubmitUnixMs, StartUnixMs: j.StartUnixMs, EndUnixMs: j.EndUnixMs,
		ExpectedStartUnixMs: j.ExpectedStartUnixMs, ArrayJobId: j.ArrayJobId, ArrayTaskId: j.ArrayTaskId,
	}
	if sp := j.Spec; sp != nil {
		c.Spec = &JobSpec{
			Name: sp.Name, Partition: sp.Partition, Account: sp.Account, Qos: sp.Qos,
			Reservation: sp.Reservation, Dependency: sp.Dependency, Comment: sp.Comment, Nice: sp.Nice,
			TimeLimitS: sp.TimeLimitS, NodesMin: sp.NodesMin, NodesMax: sp.NodesMax, Ntasks: sp.Ntasks,
			NtasksPerNode: sp.NtasksPerNode, GpusPerNode: sp.GpusPerNode, GpuType: sp.GpuType,
			GresPerNode: sp.GresPerNode,
		}
		if private {
			c.Spec.WorkingDir = sp.WorkingDir
		}
	}
	if a := j.Allocation; a != nil {
		c.Allocation = &Allocation{Nodes: a.Nodes}
		for _, r := range a.Ranks {
			c.Allocation.Ranks = append(c.Allocation.Ranks, &Rank{Cpus: r.Cpus})
		}
	}
	return c
}

// SpecShared reports whether a LIST_VIEW_QUEUE listing leaves out j's spec
// because prev, the job listed just before it, is a task of the same array
// with the very same spec: the tasks of an array share one spec, and
// decoding one JobSpec for each of 10,000 tasks was most of squeue's time
// over a queue of arrays. FillSharedSpecs puts the specs back.
func SpecShared(prev, j *Job) bool {
	return prev != nil && j.ArrayJobId != 0 && j.ArrayJobId == prev.ArrayJobId && j.Spec == prev.Spec
}

// FillSharedSpecs gives each job of a LIST_VIEW_QUEUE listing (in the
// order listed) that came without a spec the spec of the task of the same
// array listed before it (SpecShared), shared, not copied.
func FillSharedSpecs(jobs []*Job) {
	for i, j := range jobs {
		if i > 0 && j.Spec == nil && j.ArrayJobId != 0 && j.ArrayJobId == jobs[i-1].ArrayJobId {
			j.Spec = jobs[i-1].Spec
		}
	}
}
