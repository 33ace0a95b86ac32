package api

// The environment every rank receives (the contract in ARCHITECTURE.md §5).
// Launchers that already read torch's env:// or Slurm's variables work
// unchanged; netcoll reads the same names.
const (
	EnvRank           = "RANK"
	EnvWorldSize      = "WORLD_SIZE"
	EnvLocalRank      = "LOCAL_RANK"
	EnvLocalWorldSize = "LOCAL_WORLD_SIZE"
	EnvGroupRank      = "GROUP_RANK"
	EnvMasterAddr     = "MASTER_ADDR"
	EnvMasterPort     = "MASTER_PORT"

	EnvSlurmJobID       = "SLURM_JOB_ID"
	EnvSlurmJobName     = "SLURM_JOB_NAME"
	EnvSlurmProcID      = "SLURM_PROCID"
	EnvSlurmNTasks      = "SLURM_NTASKS"
	EnvSlurmLocalID     = "SLURM_LOCALID"
	EnvSlurmNodeID      = "SLURM_NODEID"
	EnvSlurmNNodes      = "SLURM_NNODES"
	EnvSlurmJobNodeList = "SLURM_JOB_NODELIST"
	EnvSlurmArrayJobID  = "SLURM_ARRAY_JOB_ID"
	EnvSlurmArrayTaskID = "SLURM_ARRAY_TASK_ID"
	EnvSlurmSubmitDir   = "SLURM_SUBMIT_DIR"

	EnvCUDAVisibleDevices   = "CUDA_VISIBLE_DEVICES"
	EnvNVIDIAVisibleDevices = "NVIDIA_VISIBLE_DEVICES"

	EnvLoomJobID = "LOOM_JOB_ID"
	// EnvLoomJobSecret is the job's secret (hex), made by the server at
	// submit: netcoll's store and peers prove knowledge of it before a
	// process may join a ring or set keys.
	EnvLoomJobSecret     = "LOOM_JOB_SECRET"
	EnvLoomGeneration    = "LOOM_GENERATION"
	EnvLoomRestartCount  = "LOOM_RESTART_COUNT"
	EnvLoomCheckpointDir = "LOOM_CHECKPOINT_DIR"
	EnvLoomResultDir     = "LOOM_RESULT_DIR"
	EnvLoomDataDir       = "LOOM_DATA_DIR"
	EnvLoomPeers         = "LOOM_PEERS" // comma-separated node names of the gang, in rank order of nodes
	EnvLoomRankPort      = "LOOM_RANK_PORT"
)
