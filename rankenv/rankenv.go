package rankenv

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strconv"
)

// The torch env:// rendezvous, which netcoll reads too.
const (
	Rank           = "RANK"
	WorldSize      = "WORLD_SIZE"
	LocalRank      = "LOCAL_RANK"
	LocalWorldSize = "LOCAL_WORLD_SIZE"
	GroupRank      = "GROUP_RANK"
	MasterAddr     = "MASTER_ADDR"
	MasterPort     = "MASTER_PORT"
)

// Slurm's names, with the values srun would give, for batch scripts written
// for Slurm.
const (
	SlurmJobID       = "SLURM_JOB_ID"
	SlurmJobName     = "SLURM_JOB_NAME"
	SlurmProcID      = "SLURM_PROCID"
	SlurmNTasks      = "SLURM_NTASKS"
	SlurmLocalID     = "SLURM_LOCALID"
	SlurmNodeID      = "SLURM_NODEID"
	SlurmNNodes      = "SLURM_NNODES"
	SlurmJobNodeList = "SLURM_JOB_NODELIST"
	SlurmArrayJobID  = "SLURM_ARRAY_JOB_ID"
	SlurmArrayTaskID = "SLURM_ARRAY_TASK_ID"
	SlurmSubmitDir   = "SLURM_SUBMIT_DIR"
)

// The GPUs allocated to a rank, as CUDA and the NVIDIA container runtime
// read them.
const (
	CUDAVisibleDevices   = "CUDA_VISIBLE_DEVICES"
	NVIDIAVisibleDevices = "NVIDIA_VISIBLE_DEVICES"
)

// Loom's own variables.
const (
	LoomJobID         = "LOOM_JOB_ID"
	LoomGeneration    = "LOOM_GENERATION"
	LoomRestartCount  = "LOOM_RESTART_COUNT"
	LoomCheckpointDir = "LOOM_CHECKPOINT_DIR"
	LoomResultDir     = "LOOM_RESULT_DIR"
	LoomDataDir       = "LOOM_DATA_DIR"
	LoomPeers         = "LOOM_PEERS" // comma-separated node names of the gang, in rank order of nodes
	LoomRankPort      = "LOOM_RANK_PORT"
	// LoomJobSecret is the job's shared secret, hex-encoded: every rank of
	// the job, and no other process, knows it. netcoll's store and peers
	// prove knowledge of it to each other before anything else.
	LoomJobSecret = "LOOM_JOB_SECRET"
)

// MinJobSecretBytes is the shortest secret JobSecret accepts (128 bits).
// NewJobSecret makes 256-bit ones.
const MinJobSecretBytes = 16

// Env is a rank's place in its job, as the torch part of the contract and
// LOOM_GENERATION describe it.
type Env struct {
	Rank       int
	WorldSize  int
	LocalRank  int // 0 when LOCAL_RANK is unset
	MasterAddr string
	MasterPort int
	Generation uint64 // 0 when LOOM_GENERATION is unset
}

// ErrNotSet is wrapped by the *VarError of a required variable that is
// missing or empty.
var ErrNotSet = errors.New("not set")

// VarError is an error about one variable of the contract.
type VarError struct {
	Name  string // the variable, e.g. "RANK"
	Value string // its value; "" when unset, and for a secret, which no error repeats
	Err   error
}

func (e *VarError) Error() string {
	switch {
	case errors.Is(e.Err, ErrNotSet):
		return e.Name + " is not set"
	case e.Value == "":
		return e.Name + ": " + e.Err.Error()
	}
	return e.Name + "=" + quoteIfNeeded(e.Value) + ": " + e.Err.Error()
}

// quoteIfNeeded leaves a plain value such as 8 or node01 bare, as a shell
// would show it, and quotes one with spaces or odd characters.
func quoteIfNeeded(v string) string {
	if v == "" {
		return `""`
	}
	for _, c := range v {
		if c <= ' ' || c > '~' || c == '"' || c == '\\' {
			return strconv.Quote(v)
		}
	}
	return v
}

func (e *VarError) Unwrap() error { return e.Err }

// LookupFunc reads one variable; os.LookupEnv is the real one.
type LookupFunc func(name string) (string, bool)

// FromOS reads the process's own environment with Read.
func FromOS() (Env, error) { return Read(os.LookupEnv) }

// Read parses RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT (required),
// LOCAL_RANK and LOOM_GENERATION (optional) through lookup, and checks that
// the rank lies in the world and the port is a TCP port. The error, about
// the first variable at fault, is a *VarError.
func Read(lookup LookupFunc) (Env, error) {
	r := reader{lookup: lookup}
	e := Env{
		Rank:       r.int(Rank, true),
		WorldSize:  r.int(WorldSize, true),
		LocalRank:  r.int(LocalRank, false),
		MasterAddr: r.str(MasterAddr, true),
		MasterPort: r.int(MasterPort, true),
		Generation: r.uint64(LoomGeneration, "not a generation number"),
	}
	if r.err != nil {
		return Env{}, r.err
	}
	switch {
	case e.WorldSize < 1:
		return Env{}, &VarError{WorldSize, strconv.Itoa(e.WorldSize), errors.New("world size must be at least 1")}
	case e.Rank >= e.WorldSize:
		return Env{}, &VarError{Rank, strconv.Itoa(e.Rank), fmt.Errorf("rank must be in [0, %d)", e.WorldSize)}
	case e.MasterPort < 1 || e.MasterPort > 65535:
		return Env{}, &VarError{MasterPort, strconv.Itoa(e.MasterPort), errors.New("want a TCP port")}
	}
	return e, nil
}

// reader keeps the first error of several reads.
type reader struct {
	lookup LookupFunc
	err    error
}

func (r *reader) fail(err error) {
	if r.err == nil {
		r.err = err
	}
}

func (r *reader) str(name string, required bool) string {
	v, _ := r.lookup(name)
	if v == "" && required {
		r.fail(&VarError{Name: name, Err: ErrNotSet})
	}
	return v
}

func (r *reader) int(name string, required bool) int {
	n, ok, err := Int(r.lookup, name)
	switch {
	case err != nil:
		r.fail(err)
	case !ok && required:
		r.fail(&VarError{Name: name, Err: ErrNotSet})
	}
	return n
}

func (r *reader) uint64(name, what string) uint64 {
	v, _ := r.lookup(name)
	if v == "" {
		return 0
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		r.fail(&VarError{name, v, errors.New(what)})
	}
	return n
}

// Int reads a non-negative decimal integer. ok is false when the variable
// is unset or empty; the error, a *VarError, says when it is not a number.
func Int(lookup LookupFunc, name string) (n int, ok bool, err error) {
	v, found := lookup(name)
	if !found || v == "" {
		return 0, false, nil
	}
	n, perr := strconv.Atoi(v)
	if perr != nil || n < 0 {
		return 0, false, &VarError{name, v, errors.New("not a non-negative integer")}
	}
	return n, true, nil
}

// JobSecret reads LOOM_JOB_SECRET through lookup and decodes it. The error,
// a *VarError, wraps ErrNotSet when the variable is unset or empty, and
// says so when it is not hex or shorter than MinJobSecretBytes; it never
// contains the value.
func JobSecret(lookup LookupFunc) ([]byte, error) {
	v, _ := lookup(LoomJobSecret)
	if v == "" {
		return nil, &VarError{Name: LoomJobSecret, Err: ErrNotSet}
	}
	key, err := hex.DecodeString(v)
	switch {
	case err != nil:
		return nil, &VarError{Name: LoomJobSecret, Err: errors.New("not a hex string")}
	case len(key) < MinJobSecretBytes:
		return nil, &VarError{Name: LoomJobSecret, Err: fmt.Errorf("%d bytes, want at least %d (%d hex digits)", len(key), MinJobSecretBytes, 2*MinJobSecretBytes)}
	}
	return key, nil
}

// NewJobSecret returns a fresh random secret for LOOM_JOB_SECRET: 32 bytes
// from crypto/rand, hex-encoded.
func NewJobSecret() string {
	var b [32]byte
	rand.Read(b[:]) // never fails: crypto/rand crashes the program instead
	return hex.EncodeToString(b[:])
}
