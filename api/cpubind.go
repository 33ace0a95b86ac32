package api

import (
	"fmt"
	"strings"
)

// CPUBind is a parsed --cpu-bind: how each rank's processes are bound to
// the cores the job was given on a node.
type CPUBind struct {
	// None leaves a rank on all of its job's cores on the node instead of
	// its own.
	None bool
	// Verbose prints the binding to the rank's stderr before it starts,
	// as Slurm's task/affinity does.
	Verbose bool
}

// ParseCPUBind parses Slurm's --cpu-bind for the forms Loom implements: a
// comma-separated list of at most one of none (or no) and cores, and of
// quiet or verbose. Every other form (threads, sockets, ldoms, rank,
// map_cpu:, mask_cpu:, map_ldom:, mask_ldom:, …) is refused, since
// ignoring it would place the rank other than asked.
func ParseCPUBind(s string) (CPUBind, error) {
	var b CPUBind
	if s == "" {
		return b, nil
	}
	kind := ""
	for _, f := range strings.Split(s, ",") {
		switch f {
		case "quiet":
			b.Verbose = false
		case "verbose", "v":
			b.Verbose = true
		case "none", "no", "cores":
			if f == "no" {
				f = "none"
			}
			if kind != "" && kind != f {
				return b, fmt.Errorf("%q and %q: give one binding", kind, f)
			}
			kind = f
			b.None = f != "cores"
		case "":
			return b, fmt.Errorf("%q has an empty entry", s)
		default:
			name, _, _ := strings.Cut(f, ":")
			return b, fmt.Errorf("%q is not implemented: Loom binds each rank to its cores (cores, the default) or to all of its job's cores on the node (none), with quiet or verbose", name)
		}
	}
	return b, nil
}

// String is the binding in ParseCPUBind's form: "cores" or "none", after
// "verbose," when verbose.
func (b CPUBind) String() string {
	kind := "cores"
	if b.None {
		kind = "none"
	}
	if b.Verbose {
		return "verbose," + kind
	}
	return kind
}
