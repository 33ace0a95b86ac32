// Package cpulist reads and writes the kernel's CPU list format ("0-3,8"),
// which cpusets, /proc/PID/status's Cpus_allowed_list, NVML's CPU affinity
// and Slurm's CPU_IDs all use. It needs only the standard library, so the
// client, the scheduler's API types and the agent's cgroups share it.
package cpulist

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Format writes cpus ascending, once each, with runs as ranges
// ("0-2,8"); "" for none.
func Format[T ~int | ~uint32](cpus []T) string {
	c := slices.Clone(cpus)
	slices.Sort(c)
	c = slices.Compact(c)
	var b strings.Builder
	for i := 0; i < len(c); {
		j := i
		for j+1 < len(c) && c[j+1] == c[j]+1 {
			j++
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.FormatInt(int64(c[i]), 10))
		if j > i {
			b.WriteByte('-')
			b.WriteString(strconv.FormatInt(int64(c[j]), 10))
		}
		i = j + 1
	}
	return b.String()
}

// Parse reads a CPU list ("0-3,8"); "" is none.
func Parse(s string) ([]int, error) {
	var out []int
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, nil
	}
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil {
			return nil, fmt.Errorf("cpu list %q: %q is not a number", s, lo)
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil || b < a {
				return nil, fmt.Errorf("cpu list %q: bad range %q", s, part)
			}
		}
		for c := a; c <= b; c++ {
			out = append(out, c)
		}
	}
	return out, nil
}
