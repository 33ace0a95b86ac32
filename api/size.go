package api

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// ParseMemMB reads a memory size as Slurm does (--mem, --mem-per-cpu,
// DefMemPerCPU): a whole number with an optional unit K, M (the
// default), G or T, which may be followed by B, in any case ("80GB",
// "400gb"). It returns megabytes, rounded up.
func ParseMemMB(v string) (uint64, error) {
	num, mult, div := v, uint64(1), uint64(1)
	if n := len(v); n > 1 && (v[n-1] == 'B' || v[n-1] == 'b') && strings.ContainsRune("KkMmGgTt", rune(v[n-2])) {
		num = v[:n-1]
	}
	if n := len(num); n > 0 {
		switch num[n-1] {
		case 'K', 'k':
			num, div = num[:n-1], 1024
		case 'M', 'm':
			num = num[:n-1]
		case 'G', 'g':
			num, mult = num[:n-1], 1024
		case 'T', 't':
			num, mult = num[:n-1], 1024*1024
		}
	}
	n, err := strconv.ParseUint(num, 10, 64)
	if err != nil || num[0] == '+' {
		return 0, fmt.Errorf("memory size %q is not a number with an optional unit K, M, G or T (KB, MB, GB, TB)", v)
	}
	if n > math.MaxUint64/mult/1024 {
		return 0, fmt.Errorf("memory size %q is too large", v)
	}
	return (n*mult + div - 1) / div, nil
}
