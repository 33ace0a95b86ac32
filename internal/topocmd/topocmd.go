package topocmd

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/loomhpc/loom/gpu"
	"github.com/loomhpc/loom/gpu/probe"
)

const usage = `Usage: loom gpu topo [--profile P | --from FILE] [--nvml]

Print a node's GPU topology matrix in the layout of nvidia-smi topo -m:
GPU and NIC rows and columns with the link classes X, NV#, PIX, PXB, PHB,
NODE and SYS, the CPU and NUMA affinity of each GPU, and the legend.

With no flags the topology is read from NVML (the NVIDIA driver).

  --profile P   print simulated profile P (%s, or flat-N)
  --from FILE   read a saved nvidia-smi topo -m output, check it, and print
                it as Loom understood it: what [agent] topology_file = FILE
                will give the scheduler
  --nvml        read from NVML (the default); fail where there is no driver
  --list        list the simulated profiles
  --help        show this help

Exit status: 0 on success, 1 on an error, 2 on a usage error.
`

// TopoMain runs `loom gpu topo` with args (the arguments after "topo") and
// returns the exit status.
func TopoMain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("loom gpu topo", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	profile := fs.String("profile", "", "")
	from := fs.String("from", "", "")
	useNVML := fs.Bool("nvml", false, "")
	list := fs.Bool("list", false, "")
	help := fmt.Sprintf(usage, strings.Join(gpu.ProfileNames(), ", "))
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, help)
			return 0
		}
		fmt.Fprintf(stderr, "loom gpu topo: %v\n\n%s", err, help)
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "loom gpu topo: unexpected argument %q\n\n%s", fs.Arg(0), help)
		return 2
	}
	set := 0
	for _, b := range []bool{*profile != "", *from != "", *useNVML} {
		if b {
			set++
		}
	}
	if set > 1 {
		fmt.Fprintf(stderr, "loom gpu topo: use one of --profile, --from and --nvml\n")
		return 2
	}
	if *list {
		for _, n := range gpu.ProfileNames() {
			fmt.Fprintf(stdout, "%-10s %s\n", n, gpu.ProfileDescription(n))
		}
		fmt.Fprintf(stdout, "%-10s %s\n", "flat-N", "N simulated PCIe GPUs, PHB between all")
		return 0
	}

	var (
		t   *gpu.Topology
		err error
	)
	switch {
	case *profile != "":
		t, err = gpu.Profile(*profile, "")
	case *from != "":
		t, err = gpu.ParseTopoFile(*from)
	default:
		t, err = probe.ReadNVML(context.Background())
		if errors.Is(err, probe.ErrNVMLUnavailable) {
			err = fmt.Errorf("%w\n(no NVIDIA driver here? use --profile P or --from FILE)", err)
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "loom gpu topo: %v\n", err)
		return 1
	}
	if err := t.WriteTopo(stdout); err != nil {
		fmt.Fprintf(stderr, "loom gpu topo: %v\n", err)
		return 1
	}
	return 0
}
