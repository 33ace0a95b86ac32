package probe

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"strconv"
	"strings"

	"github.com/loomhpc/loom/api"
	"github.com/loomhpc/loom/gpu"
)

// Options says where a node's GPUs come from.
type Options struct {
	Host         string // node name; seeds simulated UUIDs so two simulated nodes never share a UUID
	Profile      string // simulated profile name ("dgx-h100", ...); "" = none
	GPUs         int    // >0: a flat simulated profile of N GPUs (PCIe, PHB between all) — used when Profile == ""
	TopologyFile string // a saved `nvidia-smi topo -m` output
	UseNVML      bool   // try NVML first
	Logger       *slog.Logger
}

// Node is what discovery found: the API topology plus host facts a
// simulated profile implies.
type Node struct {
	Topology *api.Topology
	CPUs     uint32 // profile's CPU count for simulated profiles (dgx-h100: 224), runtime.NumCPU() otherwise
	MemoryMB uint64
	// Detail is the full model behind Topology: NICs, CPU affinity,
	// compute capability, MIG instances.
	Detail *gpu.Topology
}

// Errors of Discover besides gpu.ErrUnknownProfile.
var (
	ErrConflict        = errors.New("gpu: conflicting options")
	ErrNVMLUnavailable = errors.New("gpu: NVML unavailable")
)

// Discover finds the node's GPUs. With UseNVML it asks the driver first; if
// NVML cannot be loaded it logs one line saying so and falls back. The
// fallback is TopologyFile, else Profile, else a flat profile of GPUs
// GPUs; with none of them the node has no GPUs (a CPU-only node), which is
// not an error. Setting both TopologyFile and Profile is an error.
func Discover(ctx context.Context, o Options) (*Node, error) {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if o.TopologyFile != "" && o.Profile != "" {
		return nil, fmt.Errorf("%w: topology file %q and profile %q: set one", ErrConflict, o.TopologyFile, o.Profile)
	}
	if o.GPUs < 0 || o.GPUs > gpu.MaxFlatGPUs {
		return nil, fmt.Errorf("gpu: GPU count %d out of range 0..%d", o.GPUs, gpu.MaxFlatGPUs)
	}
	if o.UseNVML {
		t, err := discoverNVML(ctx, o.Host)
		if err == nil {
			return hostNode(t), nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		log.Warn("NVML not available, using fallback GPU description", "fallback", fallbackName(o), "err", err)
	}
	switch {
	case o.TopologyFile != "":
		t, err := gpu.ParseTopoFile(o.TopologyFile)
		if err != nil {
			return nil, err
		}
		t.Source = "file:" + o.TopologyFile
		t.MarkSimulated(o.Host)
		return hostNode(t), nil
	case o.Profile != "":
		return simulatedNode(o.Profile, o.Host)
	case o.GPUs > 0:
		return simulatedNode("flat-"+strconv.Itoa(o.GPUs), o.Host)
	}
	return hostNode(&gpu.Topology{Source: "none"}), nil
}

// hostNode is a node whose CPUs and memory are this host's.
func hostNode(t *gpu.Topology) *Node {
	return &Node{Topology: t.API(), Detail: t, CPUs: uint32(runtime.NumCPU()), MemoryMB: hostMemoryMB()}
}

// simulatedNode is a node of the named profile, with the CPUs and memory
// the profile implies (a flat profile's are this host's).
func simulatedNode(profile, host string) (*Node, error) {
	m, err := gpu.SimulatedMachine(profile, host, runtime.NumCPU())
	if err != nil {
		return nil, err
	}
	n := &Node{Topology: m.Topology.API(), Detail: m.Topology, CPUs: m.CPUs, MemoryMB: m.MemoryMB}
	if n.MemoryMB == 0 {
		n.MemoryMB = hostMemoryMB()
	}
	return n, nil
}

func fallbackName(o Options) string {
	switch {
	case o.TopologyFile != "":
		return "file:" + o.TopologyFile
	case o.Profile != "":
		return "profile " + o.Profile
	case o.GPUs > 0:
		return fmt.Sprintf("flat-%d", o.GPUs)
	}
	return "none (no GPUs)"
}

// hostMemoryMB reads MemTotal from /proc/meminfo; 0 if it cannot.
func hostMemoryMB() uint64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), "MemTotal:"); ok {
			kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err == nil {
				return kb / 1024
			}
		}
	}
	return 0
}
