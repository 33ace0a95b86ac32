package api

import (
	"fmt"
	"math"
	"slices"
	"unicode"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"
)

// Bounds on the strings and numbers of a spec (issue #14). They keep a
// job's record small, its text safe to print in squeue, and the per-node
// arithmetic of the scheduler within uint32.
const (
	// MaxNameBytes bounds --job-name, --account, --partition, --qos,
	// --gres types, --dependency and --signal.
	MaxNameBytes = 256
	// MaxPathBytes bounds --chdir, --output, --error, --container-image
	// and each mount (PATH_MAX).
	MaxPathBytes = 4096
	// MaxMounts bounds the number of --mount entries.
	MaxMounts = 256
	// MaxArgs bounds the words of a command (srun ... ARGV) and MaxArgBytes
	// each word.
	MaxArgs     = 4096
	MaxArgBytes = 128 << 10
	// MaxEnvVars bounds --export/the submitted environment and MaxEnvBytes
	// all its names and values together.
	MaxEnvVars  = 4096
	MaxEnvBytes = 1 << 20
	// MaxSpecBytes bounds a whole encoded JobSpec: the script plus
	// everything else. A submit batch is split below raftlog's record
	// limit by the server, so one spec must fit well under it.
	MaxSpecBytes = MaxScriptBytes + 2*MaxEnvBytes
	// MaxArrayExprBytes bounds the --array expression and MaxArrayParts
	// the comma-separated parts it may have.
	MaxArrayExprBytes = 4096
	MaxArrayParts     = 1024
)

// validateBounds checks the length, characters and arithmetic bounds of a
// spec. ValidateSpec calls it; the FSM relies on the server having done
// so, and the array and job-count limits are the FSM's own (package state).
func validateBounds(s *JobSpec) error {
	names := []struct{ field, v string }{
		{"--job-name", s.Name}, {"--account", s.Account}, {"--partition", s.Partition},
		{"--qos", s.Qos}, {"--gres", s.GpuType}, {"--dependency", s.Dependency},
		{"--signal", s.Signal}, {"--open-mode", s.OpenMode},
	}
	for _, n := range names {
		if err := checkText(n.field, n.v, MaxNameBytes); err != nil {
			return err
		}
	}
	paths := []struct{ field, v string }{
		{"--chdir", s.WorkingDir}, {"--output", s.Output}, {"--error", s.Error}, {"--container-image", s.Image},
	}
	for _, p := range paths {
		if err := checkText(p.field, p.v, MaxPathBytes); err != nil {
			return err
		}
	}
	if len(s.Mounts) > MaxMounts {
		return fieldErr("--mount", "%d mounts; at most %d", len(s.Mounts), MaxMounts)
	}
	for _, m := range s.Mounts {
		if err := checkText("--mount", m, MaxPathBytes); err != nil {
			return err
		}
	}
	for _, n := range slices.Concat(s.Exclude, s.Nodelist) {
		if err := checkText("--nodelist/--exclude", n, MaxNameBytes); err != nil {
			return err
		}
	}
	if len(s.Array) > MaxArrayExprBytes {
		return fieldErr("--array", "%d bytes; at most %d", len(s.Array), MaxArrayExprBytes)
	}
	if len(s.Argv) > MaxArgs {
		return fieldErr("command", "%d words; at most %d", len(s.Argv), MaxArgs)
	}
	for i, a := range s.Argv {
		if len(a) > MaxArgBytes {
			return fieldErr("command", "word %d is %d bytes; at most %d", i, len(a), MaxArgBytes)
		}
	}
	if len(s.Env) > MaxEnvVars {
		return fieldErr("--export", "%d variables; at most %d", len(s.Env), MaxEnvVars)
	}
	envBytes := 0
	for k, v := range s.Env {
		envBytes += len(k) + len(v)
	}
	if envBytes > MaxEnvBytes {
		return fieldErr("--export", "environment of %d bytes; at most %d", envBytes, MaxEnvBytes)
	}
	if n := proto.Size(s); n > MaxSpecBytes {
		return fieldErr("script", "the job's spec is %d bytes encoded; at most %d", n, MaxSpecBytes)
	}
	return checkPerNode(s)
}

// checkText refuses a string longer than max bytes, not UTF-8, or holding
// control characters (a terminal escape in a job name would reach every
// user's squeue).
func checkText(field, v string, max int) error {
	if len(v) > max {
		return fieldErr(field, "%d bytes; at most %d", len(v), max)
	}
	if !utf8.ValidString(v) {
		return fieldErr(field, "%q is not valid UTF-8", v)
	}
	for _, r := range v {
		if unicode.IsControl(r) {
			return fieldErr(field, "%q holds control character %U; only printable text is allowed", v, r)
		}
	}
	return nil
}

// checkPerNode refuses a spec whose per-node CPU or GPU count overflows
// uint32 (`-n 2 -c 2147483648` would otherwise wrap to 0 CPUs).
func checkPerNode(s *JobSpec) error {
	tasks := uint64(1) // the most tasks one node may get
	switch {
	case s.NtasksPerNode != 0:
		tasks = uint64(s.NtasksPerNode)
	case s.Ntasks != 0:
		tasks = uint64(s.Ntasks)
	}
	if cpus := tasks * uint64(max(s.CpusPerTask, 1)); cpus > math.MaxUint32 {
		return fieldErr("--cpus-per-task", "%d CPUs per task × %d tasks on one node = %d CPUs, more than %d",
			s.CpusPerTask, tasks, cpus, uint32(math.MaxUint32))
	}
	if gpus := tasks * uint64(s.GpusPerTask); gpus > math.MaxUint32 {
		return fieldErr("--gpus-per-task", "%d GPUs per task × %d tasks on one node = %d GPUs, more than %d",
			s.GpusPerTask, tasks, gpus, uint32(math.MaxUint32))
	}
	if s.Ntasks == 0 && s.NtasksPerNode != 0 {
		if total := uint64(s.NtasksPerNode) * uint64(max(s.NodesMax, s.NodesMin, 1)); total > MaxTasksPerJob {
			return fieldErr("--ntasks-per-node", "%d tasks per node × %d nodes = %d tasks; at most %d per job",
				s.NtasksPerNode, max(s.NodesMax, s.NodesMin, 1), total, MaxTasksPerJob)
		}
	}
	return nil
}

// ArrayLimitError refuses an --array whose task index reaches
// MaxArraySize, Slurm's name for the limit: the largest index allowed is
// MaxArraySize-1.
type ArrayLimitError struct {
	Expr         string
	Index        uint32
	MaxArraySize uint32
}

func (e *ArrayLimitError) Error() string {
	return fmt.Sprintf("--array=%s: task index %d is over the cluster's MaxArraySize-1 = %d (max_array_size = %d)",
		e.Expr, e.Index, e.MaxArraySize-1, e.MaxArraySize)
}

// CheckArraySize refuses tasks (from ParseArray(expr)) holding an index of
// maxSize or more; 0 means no limit beyond MaxArrayTasks.
func CheckArraySize(expr string, tasks []uint32, maxSize uint32) error {
	if maxSize == 0 {
		return nil
	}
	for _, i := range tasks {
		if i >= maxSize {
			return &ArrayLimitError{Expr: expr, Index: i, MaxArraySize: maxSize}
		}
	}
	return nil
}
