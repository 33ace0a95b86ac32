package api

// NodeUsage is what live allocations hold on one node.
type NodeUsage struct {
	GPUs  map[string]uint64 // GPU UUID -> job id holding it
	CPUs  uint32
	Cores map[uint32]uint64 // core (Rank.cores) -> job id holding it
	MemMB uint64
	Ports map[uint32]uint64 // port -> job id
	Jobs  map[uint64]struct{}
	Gres  map[string]uint64 // generic resource -> count held; nil for none
}

func newNodeUsage() *NodeUsage {
	return &NodeUsage{GPUs: map[string]uint64{}, Cores: map[uint32]uint64{}, Ports: map[uint32]uint64{}, Jobs: map[uint64]struct{}{}}
}

// Usage maps node name to what live allocations hold there.
type Usage map[string]*NodeUsage

// Node returns the usage of node name, creating an empty record.
func (u Usage) Node(name string) *NodeUsage {
	nu := u[name]
	if nu == nil {
		nu = newNodeUsage()
		u[name] = nu
	}
	return nu
}

// AddAllocation charges every rank of a to its node. A rank's port and
// GPUs are charged even when another rank of the same job shares the node.
func (u Usage) AddAllocation(a *Allocation) {
	for _, r := range a.GetRanks() {
		nu := u.Node(r.Node)
		for _, g := range r.GpuUuids {
			nu.GPUs[g] = a.JobId
		}
		nu.CPUs += r.Cpus
		for _, c := range r.Cores {
			nu.Cores[c] = a.JobId
		}
		nu.MemMB += r.MemMb
		if r.Port != 0 {
			nu.Ports[r.Port] = a.JobId
		}
		nu.Jobs[a.JobId] = struct{}{}
	}
	if a.GetMasterPort() != 0 && len(a.GetRanks()) > 0 {
		u.Node(a.Ranks[0].Node).Ports[a.MasterPort] = a.JobId
	}
	if len(a.GetGresPerNode()) > 0 {
		for _, name := range a.Nodes {
			nu := u.Node(name)
			if nu.Gres == nil {
				nu.Gres = map[string]uint64{}
			}
			for g, n := range a.GresPerNode {
				nu.Gres[g] += n
			}
		}
	}
}

// HoldsResources reports whether job j's allocation still counts against
// its nodes.
func (j *Job) HoldsResources() bool {
	return j.GetAllocation().Live()
}

// AddStepPorts charges the ports of j's steps that still hold resources.
// A step's GPUs and CPUs are the job's own, already charged; its ports
// come from its nodes' free ranges and are charged on their own.
func (u Usage) AddStepPorts(j *Job) {
	for _, st := range j.GetSteps() {
		if !st.HoldsResources() {
			continue
		}
		a := st.Allocation
		for _, r := range a.Ranks {
			if r.Port != 0 {
				u.Node(r.Node).Ports[r.Port] = j.Id
			}
		}
		if a.MasterPort != 0 && len(a.Ranks) > 0 {
			u.Node(a.Ranks[0].Node).Ports[a.MasterPort] = j.Id
		}
	}
}

// ComputeUsage sums the live allocations of jobs and their steps' ports.
func ComputeUsage(jobs func(yield func(*Job) bool)) Usage {
	u := Usage{}
	for j := range jobs {
		if j.HoldsResources() {
			u.AddAllocation(j.Allocation)
		}
		u.AddStepPorts(j)
	}
	return u
}
