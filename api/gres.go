package api

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
)

// GresGPU is the generic resource Loom schedules by device: a job's GPUs
// are JobSpec.gpus_per_node and gpu_type, a node's its topology. Every
// other name is a count (Node.gres, JobSpec.gres_per_node).
const GresGPU = "gpu"

// MaxGres bounds how many generic resources a node declares or a job asks
// for.
const MaxGres = 64

// ParseGresCount parses a generic resource count as gres.conf's Count and
// sbatch --gres read it: a decimal number, optionally followed by K, M, G,
// T or P (either case) multiplying it by 1024, 1024², and so on.
func ParseGresCount(v string) (uint64, error) {
	num, mult := v, uint64(1)
	if v != "" {
		if i := strings.IndexByte("KMGTP", v[len(v)-1]&^0x20); i >= 0 {
			num, mult = v[:len(v)-1], uint64(1)<<(10*(i+1))
		}
	}
	n, err := strconv.ParseUint(num, 10, 64)
	if err != nil {
		if errors.Is(err, strconv.ErrRange) {
			return 0, fmt.Errorf("count %q is too large", v)
		}
		return 0, fmt.Errorf("count %q is not a number (want N, or N with a K, M, G, T or P suffix)", v)
	}
	if n > math.MaxUint64/mult {
		return 0, fmt.Errorf("count %q is too large", v)
	}
	return n * mult, nil
}

// CheckGresName reports whether name may name a generic resource: letters,
// digits, '_', '-' and '.', starting with a letter, and not gpu (GPUs are
// the node's devices, not a declared count).
func CheckGresName(name string) error {
	if name == "" {
		return errors.New("empty generic resource name")
	}
	if len(name) > MaxNameBytes {
		return fmt.Errorf("generic resource name of %d bytes; at most %d", len(name), MaxNameBytes)
	}
	for i, r := range name {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || i > 0 && (r >= '0' && r <= '9' || r == '_' || r == '-' || r == '.')
		if !ok {
			return fmt.Errorf("generic resource name %q: want a letter, then letters, digits, '_', '-' or '.'", name)
		}
	}
	if name == GresGPU {
		return errors.New("gpu is not declared as a count: a node's GPUs are found by NVML, --profile or --gpus")
	}
	return nil
}

// ParseNodeGres parses a node's generic resources as loom agent --gres
// takes them: "nvme:3600,license_x:4", each NAME:COUNT (COUNT as
// ParseGresCount; NAME alone is one).
func ParseNodeGres(v string) (map[string]uint64, error) {
	out := map[string]uint64{}
	if strings.TrimSpace(v) == "" {
		return out, nil
	}
	for item := range strings.SplitSeq(v, ",") {
		item = strings.TrimSpace(item)
		name, cnt, hasCount := strings.Cut(item, ":")
		if err := CheckGresName(name); err != nil {
			return nil, err
		}
		if _, dup := out[name]; dup {
			return nil, fmt.Errorf("%s given twice", name)
		}
		n := uint64(1)
		if hasCount {
			if strings.Contains(cnt, ":") {
				return nil, fmt.Errorf("%q: want NAME:COUNT (generic resources other than gpu have no types)", item)
			}
			var err error
			if n, err = ParseGresCount(cnt); err != nil {
				return nil, fmt.Errorf("%s: %w", name, err)
			}
		}
		out[name] = n
	}
	if len(out) > MaxGres {
		return nil, fmt.Errorf("%d generic resources; at most %d", len(out), MaxGres)
	}
	return out, nil
}

// CheckNodeGres refuses a node's generic resources that ParseNodeGres
// would not give: too many, a bad name, or gpu.
func CheckNodeGres(g map[string]uint64) error {
	if len(g) > MaxGres {
		return fmt.Errorf("%d generic resources; at most %d", len(g), MaxGres)
	}
	for _, name := range slices.Sorted(maps.Keys(g)) {
		if err := CheckGresName(name); err != nil {
			return err
		}
	}
	return nil
}

// FormatGres writes generic resource counts as Slurm lists them, sorted by
// name: "license_x:4,nvme:3600"; "" for none.
func FormatGres(g map[string]uint64) string {
	parts := make([]string, 0, len(g))
	for _, name := range slices.Sorted(maps.Keys(g)) {
		parts = append(parts, name+":"+strconv.FormatUint(g[name], 10))
	}
	return strings.Join(parts, ",")
}

// validateGres checks a job's --gres counts beyond GPUs.
func validateGres(s *JobSpec) error {
	if len(s.GresPerNode) > MaxGres {
		return fieldErr("--gres", "%d generic resources; at most %d", len(s.GresPerNode), MaxGres)
	}
	for name, n := range s.GresPerNode {
		if err := CheckGresName(name); err != nil {
			return fieldErr("--gres", "%v", err)
		}
		if n == 0 {
			return fieldErr("--gres", "%s:0 asks for none; leave it out", name)
		}
	}
	return nil
}
