package scheduler

import (
	"os/exec"
	"strings"
	"testing"
)

// TestNoHardwareDeps keeps the scheduler a pure function: it takes the GPU
// model (link classes, bandwidths) from gpu's pure part, never NVML or the
// Prometheus collector.
func TestNoHardwareDeps(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go is not on PATH")
	}
	out, err := exec.Command(goBin, "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps .: %v", err)
	}
	for _, p := range strings.Fields(string(out)) {
		if strings.HasPrefix(p, "github.com/NVIDIA/go-nvml") || strings.HasPrefix(p, "github.com/prometheus/") {
			t.Errorf("scheduler depends on %s", p)
		}
	}
}
