// Package e2e is `loom bench e2e`: it starts a dev cluster in this process
// (one server with its Raft log fsynced on disk, agents with simulated GPUs
// running ranks as plain processes) and drives it as users do, by running
// the real Slurm commands next to the loom binary: one sbatch process per
// job. It times submits, submit-to-start, how fast a burst of trivial jobs
// drains (single-node jobs, 4-node gangs, one job array), and squeue, sacct
// and sbatch with a large queue of held jobs. Figures are printed as
// key=value lines, the same keys the Slurm baseline script prints.
package e2e
