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
