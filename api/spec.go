package api

import (
	"errors"
	"fmt"
	"math"
	"math/bits"
	"path/filepath"
	"slices"
	"strings"
)

// Limits on a single spec, to refuse nonsense before it reaches Raft.
const (
	MaxNodesPerJob = 16384
	MaxTasksPerJob = 1 << 20
	MaxScriptBytes = 4 << 20
)

// FieldError is a problem with one field of a JobSpec. Its message names
// the option as the user typed it on the command line.
type FieldError struct {
	Field string // the sbatch option, e.g. "--nodes"
	Msg   string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Msg }

func fieldErr(field, format string, args ...any) error {
	return &FieldError{Field: field, Msg: fmt.Sprintf(format, args...)}
}

// ErrEmptyJob is returned for a spec with neither a script nor a command.
var ErrEmptyJob = errors.New("job has no script and no command: give a batch script, --wrap, or a command")

// ValidateSpec checks what a user submitted. It does not know the cluster;
// whether the job can ever fit is the scheduler's question.
func ValidateSpec(s *JobSpec) error {
	if s == nil {
		return ErrEmptyJob
	}
	if s.Script == "" && len(s.Argv) == 0 && !s.Interactive {
		return ErrEmptyJob
	}
	if s.Interactive && (s.Script != "" || len(s.Argv) > 0) {
		return fieldErr("interactive", "a salloc allocation runs no script or command on its nodes")
	}
	if len(s.Script) > MaxScriptBytes {
		return fieldErr("script", "%d bytes is over the %d byte limit", len(s.Script), MaxScriptBytes)
	}
	if err := validateBounds(s); err != nil {
		return err
	}
	if s.NodesMax != 0 && s.NodesMax < s.NodesMin {
		return fieldErr("--nodes", "maximum %d is below minimum %d", s.NodesMax, s.NodesMin)
	}
	if s.NodesMin > MaxNodesPerJob || s.NodesMax > MaxNodesPerJob {
		return fieldErr("--nodes", "at most %d nodes per job", MaxNodesPerJob)
	}
	if s.Ntasks > MaxTasksPerJob || s.NtasksPerNode > MaxTasksPerJob {
		return fieldErr("--ntasks", "at most %d tasks per job", MaxTasksPerJob)
	}
	if s.Ntasks != 0 && s.NodesMin != 0 && s.Ntasks < s.NodesMin {
		return fieldErr("--ntasks", "%d tasks cannot cover %d nodes (each node needs at least one task)", s.Ntasks, s.NodesMin)
	}
	if s.Ntasks != 0 && s.NtasksPerNode != 0 && s.NodesMax != 0 && s.Ntasks > s.NtasksPerNode*s.NodesMax {
		return fieldErr("--ntasks", "%d tasks do not fit %d nodes at --ntasks-per-node=%d", s.Ntasks, s.NodesMax, s.NtasksPerNode)
	}
	gpuForms := 0
	for _, v := range []uint32{s.GpusPerNode, s.GpusPerTask, s.Gpus} {
		if v != 0 {
			gpuForms++
		}
	}
	if gpuForms > 1 {
		return fieldErr("--gpus", "give only one of --gpus, --gpus-per-node (or --gres) and --gpus-per-task")
	}
	if s.TimeLimitS < -1 {
		return fieldErr("--time", "negative time limit %d", s.TimeLimitS)
	}
	if s.WorkingDir != "" && !filepath.IsAbs(s.WorkingDir) {
		return fieldErr("--chdir", "%q is not an absolute path", s.WorkingDir)
	}
	if s.Nice < -10000 || s.Nice > 10000 {
		return fieldErr("--nice", "%d is outside -10000..10000", s.Nice)
	}
	if s.Signal != "" {
		if _, _, err := ParseSignal(s.Signal); err != nil {
			return fieldErr("--signal", "%v", err)
		}
	}
	if len(s.Exclude) > maxExclude {
		return fieldErr("--exclude", "%d nodes; at most %d", len(s.Exclude), maxExclude)
	}
	for _, n := range s.Exclude {
		if n == "" {
			return fieldErr("--exclude", "empty node name")
		}
	}
	if n := len(s.Nodelist); n > 0 {
		seen := make(map[string]bool, n)
		for _, name := range s.Nodelist {
			if name == "" || seen[name] {
				return fieldErr("--nodelist", "empty or repeated node name %q", name)
			}
			seen[name] = true
			if slices.Contains(s.Exclude, name) {
				return fieldErr("--nodelist", "node %s is also in --exclude", name)
			}
		}
		if lo, hi := s.NodeRange(); lo != uint32(n) || hi != uint32(n) {
			return fieldErr("--nodelist", "lists %d nodes but --nodes asks for %d-%d: a job with a node list runs on exactly the listed nodes", n, lo, hi)
		}
	}
	switch s.OpenMode {
	case "", OpenModeTruncate, OpenModeAppend:
	default:
		return fieldErr("--open-mode", "%q is neither %s nor %s", s.OpenMode, OpenModeAppend, OpenModeTruncate)
	}
	if s.Array != "" {
		if _, err := ParseArray(s.Array); err != nil {
			return fieldErr("--array="+s.Array, "%s", strings.TrimPrefix(err.Error(), "--array="+s.Array+": "))
		}
	}
	if err := validateGres(s); err != nil {
		return err
	}
	return checkOptions(s)
}

// NodeRange returns the fewest and most nodes the gang may span.
func (s *JobSpec) NodeRange() (lo, hi uint32) {
	switch {
	case s.NodesMin != 0:
		lo, hi = s.NodesMin, s.NodesMax
		if hi < lo {
			hi = lo
		}
	case s.Ntasks != 0 && s.NtasksPerNode != 0:
		lo = (s.Ntasks + s.NtasksPerNode - 1) / s.NtasksPerNode
		hi = lo
	case s.Ntasks != 0:
		lo, hi = 1, s.Ntasks
	default:
		lo, hi = 1, 1
	}
	return lo, hi
}

// NodeShape is what one node of a gang must provide.
type NodeShape struct {
	Tasks uint32
	GPUs  uint32
	CPUs  uint32
	MemMB uint64
}

// TotalTasks returns the number of ranks when the gang spans n nodes.
func (s *JobSpec) TotalTasks(n uint32) uint32 {
	switch {
	case s.Ntasks != 0:
		return s.Ntasks
	case s.NtasksPerNode != 0:
		return n * s.NtasksPerNode
	default:
		return n
	}
}

// Layout returns what each of n nodes must hold, in gang order, or false
// when the spec cannot be spread over n nodes (fewer tasks than nodes).
// A node's CPUs are its tasks times --cpus-per-task, or its GPUs times
// --cpus-per-gpu; its memory --mem, or its CPUs times --mem-per-cpu, or
// its GPUs times --mem-per-gpu.
// Tasks are spread in blocks as Slurm's default distribution does: with
// --ntasks-per-node each node takes up to that many, otherwise they are
// balanced, the first nodes taking the remainder.
func (s *JobSpec) Layout(n uint32) ([]NodeShape, bool) {
	if n == 0 {
		return nil, false
	}
	tasks := s.TotalTasks(n)
	if tasks < n {
		return nil, false
	}
	shapes := make([]NodeShape, n)
	if s.NtasksPerNode != 0 {
		if tasks > n*s.NtasksPerNode {
			return nil, false
		}
		left := tasks
		for i := range shapes {
			t := min(s.NtasksPerNode, left-(n-1-uint32(i))) // leave one for each later node
			shapes[i].Tasks = t
			left -= t
		}
	} else {
		for i := range shapes {
			shapes[i].Tasks = tasks / n
			if uint32(i) < tasks%n {
				shapes[i].Tasks++
			}
		}
	}
	cpt := max(s.CpusPerTask, 1)
	for i := range shapes {
		sh := &shapes[i]
		sh.CPUs = sh.Tasks * cpt
		switch {
		case s.GpusPerNode != 0:
			sh.GPUs = s.GpusPerNode
		case s.GpusPerTask != 0:
			sh.GPUs = sh.Tasks * s.GpusPerTask
		case s.Gpus != 0:
			sh.GPUs = s.Gpus / n
			if uint32(i) < s.Gpus%n {
				sh.GPUs++
			}
		}
		sh.CPUs = max(sh.CPUs, uint32(min(uint64(sh.GPUs)*uint64(s.CpusPerGpu), math.MaxUint32)))
		switch {
		case s.MemPerCpuMb != 0:
			sh.MemMB = saturatingMul(uint64(sh.CPUs), s.MemPerCpuMb)
		case s.MemPerGpuMb != 0:
			sh.MemMB = saturatingMul(uint64(sh.GPUs), s.MemPerGpuMb)
		default:
			sh.MemMB = s.MemPerNodeMb
		}
	}
	return shapes, true
}

// saturatingMul is a*b, or the largest uint64 where that overflows: a
// figure too large for any node, never a small one.
func saturatingMul(a, b uint64) uint64 {
	if hi, lo := bits.Mul64(a, b); hi == 0 {
		return lo
	}
	return math.MaxUint64
}

// DefaultPartition is where jobs go that name none, and what nodes join
// when their agent names none.
const DefaultPartition = "batch"

// PartitionOf returns the partition a spec asks for.
func (s *JobSpec) PartitionOf() string {
	if s.GetPartition() == "" {
		return DefaultPartition
	}
	return s.Partition
}

// InPartition reports whether node n serves partition p.
func (n *Node) InPartition(p string) bool {
	if len(n.GetPartitions()) == 0 {
		return p == DefaultPartition
	}
	for _, q := range n.Partitions {
		if q == p {
			return true
		}
	}
	return false
}

// Schedulable reports whether new work may land on n.
func (n *Node) Schedulable() bool {
	return n.GetState() != NodeState_DRAIN && n.GetState() != NodeState_DOWN
}

// DefaultMaxRestarts is how many times a job is requeued when it names no
// limit.
const DefaultMaxRestarts = 3

// RequeueAllowed reports whether the job may return to the queue after a
// node failure or preemption: as asked, else yes for batch scripts and no
// for interactive srun commands and salloc allocations (as Slurm's
// JobRequeue=1 does).
func (s *JobSpec) RequeueAllowed() bool {
	if s.Requeue != nil {
		return *s.Requeue
	}
	return len(s.Argv) == 0 && !s.Interactive
}

// RestartLimit is the most times the job is requeued.
func (s *JobSpec) RestartLimit() uint32 {
	if s.MaxRestarts != nil {
		return *s.MaxRestarts
	}
	return DefaultMaxRestarts
}

// Values of JobSpec.OpenMode (--open-mode); empty means truncate.
const (
	OpenModeTruncate = "truncate"
	OpenModeAppend   = "append"
)

// maxExclude bounds --exclude: more names than any cluster has nodes is a
// typo, not a request.
const maxExclude = 65536
