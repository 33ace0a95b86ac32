package api

import (
	"fmt"
	"strconv"
	"strings"
)

// MaxArrayTasks bounds one --array (Slurm's MaxArraySize defaults to 1001).
const MaxArrayTasks = 10001

// ParseArray expands Slurm's --array syntax ("0-99%8", "1,3,5-7",
// "0-15:4", "[0-3,7]") into task indexes; the %N limit is the scheduler's to apply.
func ParseArray(s string) ([]uint32, error) {
	if len(s) > MaxArrayExprBytes {
		return nil, fmt.Errorf("--array=%.32s...: %d bytes; at most %d", s, len(s), MaxArrayExprBytes)
	}
	body, lim, hasLim := strings.Cut(s, "%")
	if n := strings.Count(body, ",") + 1; n > MaxArrayParts {
		return nil, fmt.Errorf("--array=%s: %d comma-separated parts; at most %d", s, n, MaxArrayParts)
	}
	if hasLim {
		if n, err := strconv.ParseUint(lim, 10, 32); err != nil || n == 0 {
			return nil, fmt.Errorf("--array=%s: limit %q is not a positive number", s, lim)
		}
	}
	var idx []uint32
	seen := map[uint64]bool{}
	for _, part := range strings.Split(body, ",") {
		// As Slurm does, a token may open with '[' and its numbers end
		// with ']': "[0-3,7]" and "[1]" are 0-3,7 and 1.
		part = strings.TrimPrefix(part, "[")
		rng, stepS, hasStep := strings.Cut(part, ":")
		rng, stepS = strings.TrimSuffix(rng, "]"), strings.TrimSuffix(stepS, "]")
		step := uint64(1)
		if hasStep {
			var err error
			if step, err = strconv.ParseUint(stepS, 10, 32); err != nil || step == 0 {
				return nil, fmt.Errorf("--array=%s: step %q is not a positive number", s, stepS)
			}
		}
		loS, hiS, isRange := strings.Cut(rng, "-")
		lo, err := strconv.ParseUint(loS, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("--array=%s: %q is not a task index", s, loS)
		}
		hi := lo
		if isRange {
			if hi, err = strconv.ParseUint(hiS, 10, 32); err != nil || hi < lo {
				return nil, fmt.Errorf("--array=%s: %q is not a range", s, rng)
			}
		}
		for i := lo; i <= hi; i += step {
			if len(idx) >= MaxArrayTasks {
				return nil, fmt.Errorf("--array=%s: more than %d tasks", s, MaxArrayTasks)
			}
			if !seen[i] {
				seen[i] = true
				idx = append(idx, uint32(i))
			}
		}
	}
	return idx, nil
}
