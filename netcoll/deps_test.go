package netcoll

import (
	"os/exec"
	"strings"
	"testing"
)

// TestNoHeavyDeps keeps netcoll light for the learners that link it: the
// rank environment comes from rankenv, never from Loom's gRPC API.
func TestNoHeavyDeps(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go is not on PATH")
	}
	out, err := exec.Command(goBin, "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps .: %v", err)
	}
	for _, p := range strings.Fields(string(out)) {
		if strings.HasPrefix(p, "google.golang.org/grpc") ||
			strings.HasPrefix(p, "google.golang.org/protobuf") ||
			strings.Contains(p, "containerd") {
			t.Errorf("netcoll depends on %s", p)
		}
	}
}
