package probe

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"regexp"
	"runtime"
	"strings"
	"testing"

	"github.com/loomhpc/loom/api"
	"github.com/loomhpc/loom/gpu"
)

var uuidRE = regexp.MustCompile(`^GPU-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

func TestDiscoverDGXH100(t *testing.T) {
	n, err := Discover(context.Background(), Options{Host: "node1", Profile: "dgx-h100"})
	if err != nil {
		t.Fatalf("Discover: %v", err)
	}
	if n.CPUs != 224 {
		t.Errorf("CPUs = %d, want 224", n.CPUs)
	}
	if n.MemoryMB != 2<<20 {
		t.Errorf("MemoryMB = %d, want %d", n.MemoryMB, 2<<20)
	}
	top := n.Topology
	if got := len(top.Gpus); got != 8 {
		t.Fatalf("len(Gpus) = %d, want 8", got)
	}
	if got := len(top.Links); got != 64 {
		t.Fatalf("len(Links) = %d, want 64", got)
	}
	if top.Profile != "dgx-h100" {
		t.Errorf("Profile = %q, want %q", top.Profile, "dgx-h100")
	}
	for i := range 8 {
		g := top.Gpus[i]
		wantNUMA := int32(i / 4)
		if g.Index != uint32(i) || g.NumaNode != wantNUMA || !g.Healthy || !g.Simulated || g.MemoryMib != 81559 {
			t.Errorf("GPU %d = %v, want index %d, NUMA %d, healthy, simulated, 81559 MiB", i, g, i, wantNUMA)
		}
		if !uuidRE.MatchString(g.Uuid) {
			t.Errorf("GPU %d UUID = %q, want NVIDIA's format", i, g.Uuid)
		}
		for j := range 8 {
			l := top.Links[i*8+j]
			want := &api.Link{Type: api.LinkType_LINK_NV, Nvlinks: 18}
			if i == j {
				want = &api.Link{Type: api.LinkType_LINK_SELF}
			}
			if l.Type != want.Type || l.Nvlinks != want.Nvlinks {
				t.Errorf("Links[%d][%d] = %v, want %v", i, j, l, want)
			}
		}
	}
	if got := len(n.Detail.NICs); got != 8 {
		t.Errorf("len(NICs) = %d, want 8", got)
	}
}

func TestDiscoverFlat(t *testing.T) {
	n, err := Discover(context.Background(), Options{Host: "laptop", GPUs: 3})
	if err != nil {
		t.Fatalf("Discover: %v", err)
	}
	if n.CPUs != uint32(runtime.NumCPU()) {
		t.Errorf("CPUs = %d, want runtime.NumCPU() = %d", n.CPUs, runtime.NumCPU())
	}
	top := n.Topology
	if len(top.Gpus) != 3 || len(top.Links) != 9 || top.Profile != "flat-3" {
		t.Fatalf("topology = %d GPUs, %d links, profile %q; want 3, 9, flat-3", len(top.Gpus), len(top.Links), top.Profile)
	}
	for i, l := range top.Links {
		want := api.LinkType_LINK_PHB
		if i/3 == i%3 {
			want = api.LinkType_LINK_SELF
		}
		if l.Type != want {
			t.Errorf("Links[%d] = %v, want %v", i, l.Type, want)
		}
	}
}

func TestDiscoverNoGPUs(t *testing.T) {
	n, err := Discover(context.Background(), Options{Host: "login1"})
	if err != nil {
		t.Fatalf("Discover: %v", err)
	}
	if len(n.Topology.Gpus) != 0 || len(n.Topology.Links) != 0 {
		t.Errorf("topology = %v, want no GPUs", n.Topology)
	}
}

func TestDiscoverErrors(t *testing.T) {
	tests := []struct {
		name string
		o    Options
		want error
	}{
		{"unknown profile", Options{Profile: "dgx-z900"}, gpu.ErrUnknownProfile},
		{"file and profile", Options{Profile: "dgx-h100", TopologyFile: "x"}, ErrConflict},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Discover(context.Background(), tt.o)
			if !errors.Is(err, tt.want) {
				t.Errorf("Discover(%+v) error = %v, want %v", tt.o, err, tt.want)
			}
		})
	}
}

// Without libnvidia-ml.so (as on the build machines), UseNVML logs one line
// and falls back to the profile.
func TestDiscoverNVMLFallback(t *testing.T) {
	if nvmlPresent() {
		t.Skip("NVML is present on this machine")
	}
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	n, err := Discover(context.Background(), Options{Host: "n", Profile: "dgx-a100", UseNVML: true, Logger: log})
	if err != nil {
		t.Fatalf("Discover: %v", err)
	}
	if n.Topology.Profile != "dgx-a100" {
		t.Errorf("Profile = %q, want dgx-a100", n.Topology.Profile)
	}
	out := buf.String()
	if strings.Count(out, "\n") != 1 || !strings.Contains(out, "NVML not available") || !strings.Contains(out, "dgx-a100") {
		t.Errorf("log = %q, want one line saying NVML is not available and naming the fallback", out)
	}
}

func TestDiscoverTopologyFile(t *testing.T) {
	n, err := Discover(context.Background(), Options{Host: "n9", TopologyFile: "../testdata/dgx-h100-r535.txt"})
	if err != nil {
		t.Fatalf("Discover: %v", err)
	}
	top := n.Topology
	if top.Profile != "file:../testdata/dgx-h100-r535.txt" || len(top.Gpus) != 8 || len(n.Detail.NICs) != 12 {
		t.Fatalf("topology = %q, %d GPUs, %d NICs; want file:…, 8, 12", top.Profile, len(top.Gpus), len(n.Detail.NICs))
	}
	for i, g := range top.Gpus {
		if g.Uuid != gpu.SimulatedUUID("n9", i) || !g.Simulated || !g.Healthy || g.NumaNode != int32(i/4) {
			t.Errorf("GPU%d = %v, want simulated UUID, healthy, NUMA %d", i, g, i/4)
		}
	}
	if _, err := Discover(context.Background(), Options{TopologyFile: "../testdata/nope.txt"}); err == nil {
		t.Errorf("Discover with a missing file = nil error")
	}
}
