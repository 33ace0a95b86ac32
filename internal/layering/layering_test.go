// Package layering holds the test that keeps Loom's import rules
// (docs/architecture.md, "Packages, and who may import whom"): what a
// package must never link, checked with go list on the real module.
package layering

import (
	"os/exec"
	"strings"
	"testing"
)

func TestPackagesLinkOnlyWhatTheirLayerAllows(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatal("go is not on PATH: the import rules cannot be checked")
	}
	tests := []struct {
		pkg, why string
		banned   []string // prefixes of import paths
	}{
		{"github.com/loomhpc/loom/netcoll", "learners link netcoll: the rank environment comes from rankenv, never from the gRPC API",
			[]string{"google.golang.org/grpc", "google.golang.org/protobuf", "github.com/containerd/"}},
		{"github.com/loomhpc/loom/scheduler", "the scheduler is pure: the GPU model comes from gpu, never NVML or the Prometheus collector",
			[]string{"github.com/NVIDIA/go-nvml", "github.com/prometheus/"}},
		{"github.com/loomhpc/loom/gpu", "gpu is the pure model; NVML lives in gpu/probe, Prometheus in gpu/metrics",
			[]string{"github.com/NVIDIA/go-nvml", "github.com/prometheus/"}},
		{"github.com/loomhpc/loom/cmd/loomd", "the daemons' binary never links example learners",
			[]string{"github.com/loomhpc/loom/examples/"}},
		{"github.com/loomhpc/loom/cmd/loom", "loom is the lean client every sbatch starts: the API messages, rpcclient and the CLI; the daemons' dependencies live in loomd (their package initialisation cost each call 30 ms) and grpc-go in the daemons too (6-9 ms before main; api/apiclient and rpcclient speak its wire protocol)",
			[]string{"google.golang.org/grpc", "github.com/loomhpc/loom/api/apirpc", "github.com/loomhpc/loom/pki/pkirpc",
				"github.com/loomhpc/loom/examples/", "github.com/containerd/", "github.com/distribution/", "github.com/prometheus/",
				// Raft, gossip and their logging and metrics; the state's
				// radix tree and LRU (backup files are decoded offline by
				// snapshot inspect) have no start-up cost and are allowed.
				"github.com/hashicorp/raft", "github.com/hashicorp/memberlist", "github.com/hashicorp/go-hclog",
				"github.com/hashicorp/go-metrics", "github.com/hashicorp/go-msgpack", "github.com/armon/", "github.com/NVIDIA/", "github.com/google/go-cmp", "go.etcd.io/bbolt",
				"github.com/loomhpc/loom/server", "github.com/loomhpc/loom/agent", "github.com/loomhpc/loom/raftnode", "github.com/loomhpc/loom/gossip"}},
		{"github.com/loomhpc/loom/rankenv", "the rank environment contract depends on nothing",
			[]string{"github.com/", "google.golang.org/"}},
	}
	for _, tt := range tests {
		t.Run(tt.pkg, func(t *testing.T) {
			out, err := exec.Command(goBin, "list", "-deps", tt.pkg).Output()
			if err != nil {
				t.Fatalf("go list -deps %s: %v", tt.pkg, err)
			}
			for _, p := range strings.Fields(string(out)) {
				if p == tt.pkg {
					continue
				}
				for _, b := range tt.banned {
					if strings.HasPrefix(p, b) {
						t.Errorf("%s links %s: %s", tt.pkg, p, tt.why)
					}
				}
			}
		})
	}
}
