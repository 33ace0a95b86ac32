package gpu

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
	Detail *Topology
}

// Errors of Discover.
var (
	ErrUnknownProfile  = errors.New("gpu: unknown profile")
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
	if o.GPUs < 0 || o.GPUs > maxFlatGPUs {
		return nil, fmt.Errorf("gpu: GPU count %d out of range 0..%d", o.GPUs, maxFlatGPUs)
	}
	if o.UseNVML {
		t, err := discoverNVML(ctx, o.Host)
		if err == nil {
			return &Node{Topology: t.API(), Detail: t, CPUs: uint32(runtime.NumCPU()), MemoryMB: hostMemoryMB()}, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		log.Warn("NVML not available, using fallback GPU description", "fallback", fallbackName(o), "err", err)
	}
	switch {
	case o.TopologyFile != "":
		t, err := ParseTopoFile(o.TopologyFile)
		if err != nil {
			return nil, err
		}
		t.Source = "file:" + o.TopologyFile
		fillSimulated(t, o.Host)
		return &Node{Topology: t.API(), Detail: t, CPUs: uint32(runtime.NumCPU()), MemoryMB: hostMemoryMB()}, nil
	case o.Profile != "":
		p, ok := lookupProfile(o.Profile, runtime.NumCPU())
		if !ok {
			return nil, fmt.Errorf("%w %q (known: %s, flat-N)", ErrUnknownProfile, o.Profile, strings.Join(ProfileNames(), ", "))
		}
		return nodeFromProfile(p, o.Host), nil
	case o.GPUs > 0:
		return nodeFromProfile(flatProfile(o.GPUs, runtime.NumCPU()), o.Host), nil
	}
	t := &Topology{Source: "none"}
	return &Node{Topology: t.API(), Detail: t, CPUs: uint32(runtime.NumCPU()), MemoryMB: hostMemoryMB()}, nil
}

func nodeFromProfile(p *profile, host string) *Node {
	t := p.build(host)
	n := &Node{Topology: t.API(), Detail: t, CPUs: p.cpus, MemoryMB: p.memoryMB}
	if p.memoryMB == 0 { // flat profiles describe this host
		n.MemoryMB = hostMemoryMB()
	}
	return n
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

// fillSimulated gives GPUs read from a file what the file lacks: UUIDs
// derived from host, health, the simulated mark.
func fillSimulated(t *Topology, host string) {
	for i := range t.GPUs {
		g := &t.GPUs[i]
		if g.UUID == "" {
			g.UUID = SimulatedUUID(host, g.Index)
		}
		g.Healthy = true
		g.Simulated = true
	}
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
