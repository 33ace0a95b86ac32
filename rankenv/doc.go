// Package rankenv is the rank-environment contract: the names of the
// variables every rank of a Loom job finds in its environment, and the
// parsing of the ones a rank reads back. It imports only the standard
// library, so that netcoll, which learners link into their training code,
// can read its place in the job without pulling in Loom's gRPC API.
//
// The agent writes the contract when it starts a rank and the submitter
// cannot override it. It speaks three dialects at once, so that launchers
// written for any of them run unchanged:
//
//   - torch's env:// rendezvous: RANK, WORLD_SIZE, LOCAL_RANK,
//     LOCAL_WORLD_SIZE, GROUP_RANK (the node's index in the gang),
//     MASTER_ADDR and MASTER_PORT (rank 0's host and the port its store
//     listens on);
//   - Slurm's: SLURM_JOB_ID, SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID,
//     SLURM_NODEID, SLURM_NNODES, SLURM_JOB_NODELIST and the rest, with the
//     values srun would give;
//   - CUDA's: CUDA_VISIBLE_DEVICES and NVIDIA_VISIBLE_DEVICES list the UUIDs
//     of the GPUs allocated to the rank ("void" for none in the latter);
//
// and Loom's own LOOM_* variables: the job id, the allocation's generation
// (which fences a requeued gang from its predecessor), the restart count,
// checkpoint, result and data directories, the gang's node names, the
// rank's own port, and LOOM_JOB_SECRET: a per-job secret, hex-encoded, that
// every rank of the job and no other process knows. netcoll's rendezvous
// store and peers prove knowledge of it to each other before they exchange
// anything else (docs/netcoll.md).
//
// Read parses the torch part, which is what a collective library needs,
// and JobSecret the secret; every error they return names the variable at
// fault, and none repeats the secret. docs/architecture.md places the
// contract in the whole system.
package rankenv
