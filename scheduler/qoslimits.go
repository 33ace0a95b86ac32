package scheduler

import (
	"math/bits"

	"github.com/loomhpc/loom/api"
)

// QoS per-user limits on running jobs (Slurm's MaxTRESPerUser and
// MaxJobsPerUser): a job that would take its user over one of its QoS's
// limits waits with Slurm's reason for it, and does not block the jobs
// behind it (it is not the resources it waits for).
const (
	// ReasonQOSMaxJobsPerUser: the user runs MaxJobsPerUser jobs of the QoS.
	ReasonQOSMaxJobsPerUser = "QOSMaxJobsPerUserLimit"
	// ReasonQOSMaxGRESPerUser: starting would take the user's GPUs in the
	// QoS over MaxTRESPerUser=gres/gpu=N.
	ReasonQOSMaxGRESPerUser = "QOSMaxGRESPerUser"
	// ReasonQOSMaxCPUPerUser: starting would take the user's CPUs in the
	// QoS over MaxTRESPerUser=cpu=N.
	ReasonQOSMaxCPUPerUser = "QOSMaxCpuPerUserLimit"
)

// userQOS names one user's jobs in one QoS.
type userQOS struct{ user, qos string }

// qosUse is what a user's running jobs of one QoS hold.
type qosUse struct{ jobs, gpus, cpus int }

// qosUsage sums what running jobs hold per user and QoS, for the QoS
// that have per-user limits; nil when none has.
func (c *cycle) qosUsage() map[userQOS]*qosUse {
	limited := false
	for _, q := range c.cfg.QOS {
		limited = limited || q.MaxJobsPerUser > 0 || q.MaxGPUsPerUser > 0 || q.MaxCPUsPerUser > 0
	}
	if !limited {
		return nil
	}
	use := map[userQOS]*qosUse{}
	for _, j := range c.v.Jobs {
		if !j.HoldsResources() {
			continue
		}
		u := use[userQOS{j.User, j.GetSpec().GetQos()}]
		if u == nil {
			u = &qosUse{}
			use[userQOS{j.User, j.GetSpec().GetQos()}] = u
		}
		u.jobs++
		for _, r := range j.GetAllocation().GetRanks() {
			u.gpus += len(r.GpuUuids)
			u.cpus += int(r.Cpus)
		}
	}
	return use
}

// overJobLimit returns the reason j may not start because its user runs
// as many jobs of its QoS as allowed, or "".
func (c *cycle) overJobLimit(use map[userQOS]*qosUse, j *api.Job) string {
	if use == nil {
		return ""
	}
	q := c.cfg.QOS[j.GetSpec().GetQos()]
	if u := use[userQOS{j.User, j.GetSpec().GetQos()}]; q.MaxJobsPerUser > 0 && u != nil && u.jobs >= int(q.MaxJobsPerUser) {
		return ReasonQOSMaxJobsPerUser
	}
	return ""
}

// overTRESLimit returns the reason placing j at p would take its user
// over its QoS's GPU or CPU limit, or "".
func (c *cycle) overTRESLimit(use map[userQOS]*qosUse, j *api.Job, r *request, p *placement) string {
	if use == nil {
		return ""
	}
	q := c.cfg.QOS[j.GetSpec().GetQos()]
	if q.MaxGPUsPerUser == 0 && q.MaxCPUsPerUser == 0 {
		return ""
	}
	gpus, cpus := 0, 0
	for k, i := range p.nodes {
		gpus += bits.OnesCount64(p.masks[k])
		if r.exclusive {
			cpus += int(c.st.cpus[i])
		} else {
			cpus += int(p.shapes[k].CPUs)
		}
	}
	u := use[userQOS{j.User, j.GetSpec().GetQos()}]
	if u == nil {
		u = &qosUse{}
	}
	switch {
	case q.MaxGPUsPerUser > 0 && u.gpus+gpus > int(q.MaxGPUsPerUser):
		return ReasonQOSMaxGRESPerUser
	case q.MaxCPUsPerUser > 0 && u.cpus+cpus > int(q.MaxCPUsPerUser):
		return ReasonQOSMaxCPUPerUser
	}
	return ""
}

// chargeQOS counts a job placed this cycle against its user's limits.
func (c *cycle) chargeQOS(use map[userQOS]*qosUse, j *api.Job, a *api.Allocation) {
	if use == nil {
		return
	}
	k := userQOS{j.User, j.GetSpec().GetQos()}
	u := use[k]
	if u == nil {
		u = &qosUse{}
		use[k] = u
	}
	u.jobs++
	for _, r := range a.GetRanks() {
		u.gpus += len(r.GpuUuids)
		u.cpus += int(r.Cpus)
	}
}
