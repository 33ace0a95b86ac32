package api

import (
	"fmt"
	"math/big"
	"slices"
	"strconv"
	"strings"
)

// CPUBind is a parsed --cpu-bind: how each rank's processes are bound to
// the cores its job was given on a node. Core numbers are the node's
// cores, 0..cpus-1, as Rank.cores and scontrol show job -d's CPU_IDs
// number them.
type CPUBind struct {
	// Kind is the binding: "" (the default, the rank's own cores),
	// "cores", "threads" (the same: a core is one CPU the node
	// registered), "sockets" or "ldoms" (every core the job holds on the
	// NUMA nodes of the rank's cores), "rank" (the job's local-rank-th
	// core on the node), "none" (all of the job's cores on the node),
	// "map_cpu" or "mask_cpu" (List).
	Kind string
	// List holds, for map_cpu and mask_cpu, the cores of each entry: a
	// rank takes entry local_rank modulo its length.
	List [][]uint32
	// Given is List as the user wrote it (SLURM_CPU_BIND_LIST).
	Given string
	// Verbose prints the binding to the rank's stderr before it starts,
	// as Slurm's task/affinity does.
	Verbose bool
}

// None reports whether b leaves a rank on all of its job's cores.
func (b CPUBind) None() bool { return b.Kind == "none" }

// ParseCPUBind parses Slurm's --cpu-bind: a comma-separated list of at
// most one binding (none or no, cores, threads, sockets, ldoms, rank,
// map_cpu:<list>, mask_cpu:<list>) and of quiet or verbose. A list runs
// to the next entry that is not a number (map_cpu: decimal, or hex after
// 0x; mask_cpu: hex, 0x optional). Every other form (boards, map_ldom:,
// mask_ldom:, rank_ldom, …) is refused, since ignoring it would place
// the rank other than asked.
func ParseCPUBind(s string) (CPUBind, error) {
	var b CPUBind
	if s == "" {
		return b, nil
	}
	fields := strings.Split(s, ",")
	setKind := func(k string) error {
		if b.Kind != "" && b.Kind != k {
			return fmt.Errorf("%q and %q: give one binding", b.Kind, k)
		}
		b.Kind = k
		return nil
	}
	for i := 0; i < len(fields); i++ {
		f := fields[i]
		name, list, isList := strings.Cut(f, ":")
		switch {
		case f == "quiet":
			b.Verbose = false
		case f == "verbose" || f == "v":
			b.Verbose = true
		case f == "none" || f == "no":
			if err := setKind("none"); err != nil {
				return b, err
			}
		case f == "cores" || f == "threads" || f == "sockets" || f == "ldoms" || f == "rank":
			if err := setKind(f); err != nil {
				return b, err
			}
		case isList && (name == "map_cpu" || name == "mask_cpu"):
			if err := setKind(name); err != nil {
				return b, err
			}
			entries := []string{list}
			for i+1 < len(fields) && isCPUListEntry(name, fields[i+1]) {
				i++
				entries = append(entries, fields[i])
			}
			for _, e := range entries {
				cores, err := parseCPUListEntry(name, e)
				if err != nil {
					return b, err
				}
				b.List = append(b.List, cores)
			}
			b.Given = strings.Join(entries, ",")
		case f == "":
			return b, fmt.Errorf("%q has an empty entry", s)
		default:
			return b, fmt.Errorf("%q is not implemented: Loom binds to cores (the default), threads, sockets, ldoms, rank, none, map_cpu:<list> or mask_cpu:<list>, with quiet or verbose", name)
		}
	}
	return b, nil
}

// isCPUListEntry reports whether f continues a list of kind: a map_cpu
// entry starts with a digit, a mask_cpu entry is hex digits after an
// optional 0x ("cores" and the other words are neither).
func isCPUListEntry(kind, f string) bool {
	h := strings.TrimPrefix(strings.ToLower(f), "0x")
	if h == "" || strings.Trim(h, "0123456789abcdef") != "" {
		return false
	}
	return kind == "mask_cpu" || f[0] >= '0' && f[0] <= '9'
}

// parseCPUListEntry is one map_cpu entry (a core number) or mask_cpu
// entry (a hexadecimal mask of cores) as the cores it names.
func parseCPUListEntry(kind, e string) ([]uint32, error) {
	if e == "" {
		return nil, fmt.Errorf("%s: empty entry in the list", kind)
	}
	if kind == "map_cpu" {
		base, digits := 10, e
		if h, ok := strings.CutPrefix(strings.ToLower(e), "0x"); ok {
			base, digits = 16, h
		}
		c, err := strconv.ParseUint(digits, base, 32)
		if err != nil {
			return nil, fmt.Errorf("map_cpu: %q is not a CPU number", e)
		}
		return []uint32{uint32(c)}, nil
	}
	m, ok := new(big.Int).SetString(strings.TrimPrefix(strings.ToLower(e), "0x"), 16)
	if !ok || m.Sign() == 0 {
		return nil, fmt.Errorf("mask_cpu: %q is not a non-zero hexadecimal CPU mask", e)
	}
	var cores []uint32
	for c := range m.BitLen() {
		if m.Bit(c) == 1 {
			cores = append(cores, uint32(c))
		}
	}
	return cores, nil
}

// Entry is the cores map_cpu or mask_cpu gives the rank of local rank
// local: entry local modulo the list's length, as Slurm cycles it.
func (b CPUBind) Entry(local uint32) []uint32 {
	if len(b.List) == 0 {
		return nil
	}
	return slices.Clone(b.List[int(local)%len(b.List)])
}

// String is the binding in ParseCPUBind's form: the kind ("cores" by
// default, with its list), after "verbose," when verbose.
func (b CPUBind) String() string {
	kind := b.Kind
	switch kind {
	case "":
		kind = "cores"
	case "map_cpu", "mask_cpu":
		kind += ":" + b.Given
	}
	if b.Verbose {
		return "verbose," + kind
	}
	return kind
}
