package api

import "time"

// ServiceGPUs is how many GPUs the allocation counts for attained
// service: the GPUs its ranks hold, and 1 for a CPU-only allocation, so
// that every job that runs attains service.
func (a *Allocation) ServiceGPUs() int {
	n := 0
	for _, r := range a.GetRanks() {
		n += len(r.GpuUuids)
	}
	return max(n, 1)
}

// RunGPUMs is the service j's current allocation has had by nowMs:
// ServiceGPUs × the milliseconds since it started; 0 when it does not run.
func (j *Job) RunGPUMs(nowMs int64) uint64 {
	if !j.GetState().Active() || j.GetStartUnixMs() == 0 || nowMs <= j.GetStartUnixMs() {
		return 0
	}
	return uint64(j.GetAllocation().ServiceGPUs()) * uint64(nowMs-j.GetStartUnixMs())
}

// AttainedGPUSeconds is j's attained service at now: the GPU-seconds of
// its earlier generations (AttainedGpuMs) and of its current run.
func (j *Job) AttainedGPUSeconds(now time.Time) float64 {
	return float64(j.GetAttainedGpuMs()+j.RunGPUMs(now.UnixMilli())) / 1000
}

// RanSeconds is how long j has run, over every generation, at now: its
// attained service divided by the GPUs of its last allocation.
func (j *Job) RanSeconds(now time.Time) float64 {
	return j.AttainedGPUSeconds(now) / float64(j.GetAllocation().ServiceGPUs())
}

// ReasonPreempted is the pending reason of a job that a preemption sent
// back to the queue; it stays while the ranks of the preempted allocation
// stop (the scheduler leaves a job that holds resources alone).
const ReasonPreempted = "Preempted"

// Preempted reports whether j's allocation is being stopped because the
// scheduler preempted it and requeued the job.
func (j *Job) Preempted() bool {
	return j.GetState() == JobState_PENDING && j.GetReason() == ReasonPreempted
}

// AllocGPUMs is the GPU time j's allocations held by nowMs, over every
// generation: the GPUs its ranks hold × how long each allocation ran. A
// CPU-only job holds none (unlike its attained service, which counts it
// as one GPU). UsedGpuMs is the part of it the job's ranks kept busy.
func (j *Job) AllocGPUMs(nowMs int64) uint64 {
	gpus := 0
	for _, r := range j.GetAllocation().GetRanks() {
		gpus += max(len(r.GpuUuids), len(r.GpuIndexes))
	}
	if gpus == 0 {
		return 0
	}
	ran := int64(0)
	if start := j.GetStartUnixMs(); start > 0 {
		end := nowMs
		if !j.GetState().Active() {
			end = start
			if j.GetState().Terminal() && j.GetEndUnixMs() > 0 {
				end = j.GetEndUnixMs()
			}
		}
		ran = max(end-start, 0)
	}
	// Earlier generations' attained service counted these same GPUs.
	return j.GetAttainedGpuMs() + uint64(gpus)*uint64(ran)
}
