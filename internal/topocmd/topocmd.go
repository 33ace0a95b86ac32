package topocmd

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/loomhpc/loom/gpu"
	"github.com/loomhpc/loom/gpu/probe"
)

const usage = `Usage: loom gpu topo [--profile P | --from FILE] [--nvml] [--json]

Print a node's GPU topology matrix in the layout of nvidia-smi topo -m:
GPU and NIC rows and columns with the link classes X, NV#, PIX, PXB, PHB,
NODE and SYS, the CPU and NUMA affinity of each GPU, and the legend.

With no flags the topology is read from NVML (the NVIDIA driver).

  --profile P   print simulated profile P (%s, or flat-N)
  --from FILE   read a saved nvidia-smi topo -m output, check it, and print
                it as Loom understood it: what [agent] topology_file = FILE
                will give the scheduler
  --nvml        read from NVML (the default); fail where there is no driver
  --json        print what was discovered as JSON instead: the GPU count,
                each GPU's index, UUID, model, memory and PCI bus id, the
                NICs, and the link matrix (test/hw/run.sh compares it with
                nvidia-smi)
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
	asJSON := fs.Bool("json", false, "")
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
	if *asJSON {
		err = writeJSON(stdout, t)
	} else {
		err = t.WriteTopo(stdout)
	}
	if err != nil {
		fmt.Fprintf(stderr, "loom gpu topo: %v\n", err)
		return 1
	}
	return 0
}

// discovery is the JSON form of a topology: what the node's discovery
// found, in the terms nvidia-smi reports it.
type discovery struct {
	Source string    `json:"source"`
	Count  int       `json:"count"`
	GPUs   []gpuJSON `json:"gpus"`
	NICs   []nicJSON `json:"nics"`
	// Devices names the rows and columns of Links: GPU0… then NIC0….
	Devices []string   `json:"devices"`
	Links   [][]string `json:"links"` // cells as nvidia-smi topo -m prints them: X, NV18, PIX, …
}

type gpuJSON struct {
	Index       int    `json:"index"`
	UUID        string `json:"uuid"`
	Name        string `json:"name"`
	MemoryMiB   uint64 `json:"memory_mib"`
	PCIBusID    string `json:"pci_bus_id"`
	NUMANode    int    `json:"numa_node"`
	CPUAffinity string `json:"cpu_affinity"`
	Simulated   bool   `json:"simulated"`
}

type nicJSON struct {
	Name     string `json:"name"`
	PCIBusID string `json:"pci_bus_id"`
	NUMANode int    `json:"numa_node"`
}

func writeJSON(w io.Writer, t *gpu.Topology) error {
	d := discovery{Source: t.Source, Count: len(t.GPUs), GPUs: []gpuJSON{}, NICs: []nicJSON{}, Devices: []string{}, Links: [][]string{}}
	for _, g := range t.GPUs {
		d.GPUs = append(d.GPUs, gpuJSON{Index: g.Index, UUID: g.UUID, Name: g.Name, MemoryMiB: g.MemoryMiB,
			PCIBusID: g.PCIBusID, NUMANode: g.NUMANode, CPUAffinity: g.CPUAffinity, Simulated: g.Simulated})
		d.Devices = append(d.Devices, fmt.Sprintf("GPU%d", g.Index))
	}
	for k, n := range t.NICs {
		d.NICs = append(d.NICs, nicJSON{Name: n.Name, PCIBusID: n.PCIBusID, NUMANode: n.NUMANode})
		d.Devices = append(d.Devices, fmt.Sprintf("NIC%d", k))
	}
	for _, row := range t.Links {
		cells := make([]string, len(row))
		for j, l := range row {
			cells[j] = l.String()
		}
		d.Links = append(d.Links, cells)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(d)
}
