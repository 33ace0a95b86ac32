package api

// NodeUsage is what live allocations hold on one node.
type NodeUsage struct {
	GPUs  map[string]uint64 // GPU UUID -> job id holding it
	CPUs  uint32
	MemMB uint64
	Ports map[uint32]uint64 // port -> job id
	Jobs  map[uint64]struct{}
}

func newNodeUsage() *NodeUsage {
	return &NodeUsage{GPUs: map[string]uint64{}, Ports: map[uint32]uint64{}, Jobs: map[uint64]struct{}{}}
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
		nu.MemMB += r.MemMb
		if r.Port != 0 {
			nu.Ports[r.Port] = a.JobId
		}
		nu.Jobs[a.JobId] = struct{}{}
	}
	if a.GetMasterPort() != 0 && len(a.GetRanks()) > 0 {
		u.Node(a.Ranks[0].Node).Ports[a.MasterPort] = a.JobId
	}
}

// HoldsResources reports whether job j's allocation still counts against
// its nodes.
func (j *Job) HoldsResources() bool {
	return j.GetAllocation().Live()
}

// ComputeUsage sums the live allocations of jobs.
func ComputeUsage(jobs func(yield func(*Job) bool)) Usage {
	u := Usage{}
	for j := range jobs {
		if j.HoldsResources() {
			u.AddAllocation(j.Allocation)
		}
	}
	return u
}
