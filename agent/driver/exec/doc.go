// Package exec is the driver that runs ranks as plain processes, as the
// submitting user. It is for bare-metal nodes, laptops, the dev cluster
// and CI without containerd; it ignores images and mounts.
//
// Where the agent runs as root on a cgroup file system the driver
// isolates (NewIsolated): every rank runs in a cgroup of its own, below
// its job's, which holds the rank's CPUs (cpuset), its memory limit, the
// GPU device nodes it may not open, and every process it forks. A small
// root shim (loom exec-shim) joins the group before anything of the user's
// runs, binds the job's private /tmp and /dev/shm in its own mount
// namespace, starts the rank as the user and records its exit; at the
// rank's end the driver kills whatever is left in the group (freeze,
// kill, thaw). Because the shim and the group outlive the agent, a
// restarted agent finds its ranks by their cgroups and re-attaches.
//
// Without isolation each rank leads its own process group, nothing is
// limited, and a restarted agent cannot re-attach (the ranks were the old
// agent's children, and no other process can learn how they end): it
// stops the ranks its predecessor left running (their jobs are requeued),
// so that they do not go on using GPUs the scheduler hands to others.
package exec
