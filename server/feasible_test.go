package server

import (
	"testing"

	"github.com/loomhpc/loom/api"
	"google.golang.org/protobuf/proto"
)

// The memory of verdicts must tell apart any two specs that could fit
// differently, and may treat as one those that differ in what they run.
func TestFeasibilityKey(t *testing.T) {
	base := &api.JobSpec{NodesMin: 2, NtasksPerNode: 4, GpusPerNode: 4, Partition: "batch", TimeLimitS: 600}
	same := []func(*api.JobSpec){
		func(s *api.JobSpec) { s.Name = "other" },
		func(s *api.JobSpec) { s.Script = "#!/bin/sh\nhostname\n" },
		func(s *api.JobSpec) { s.Env = map[string]string{"A": "1"} },
		func(s *api.JobSpec) { s.Output = "x-%j.out" },
		func(s *api.JobSpec) { s.Array = "0-9" },
		func(s *api.JobSpec) { s.Image = "registry/x:1" },
	}
	differ := []func(*api.JobSpec){
		func(s *api.JobSpec) { s.NodesMin = 3 },
		func(s *api.JobSpec) { s.NtasksPerNode = 8 },
		func(s *api.JobSpec) { s.GpusPerNode = 9 },
		func(s *api.JobSpec) { s.GpuType = "h100" },
		func(s *api.JobSpec) { s.MemPerNodeMb = 1 << 20 },
		func(s *api.JobSpec) { s.CpusPerTask = 64 },
		func(s *api.JobSpec) { s.Partition = "debug" },
		func(s *api.JobSpec) { s.Exclusive = true },
		func(s *api.JobSpec) { s.Switches = 1 },
		func(s *api.JobSpec) { s.TimeLimitS = -1 },
		func(s *api.JobSpec) { s.Account = "physics" },
		func(s *api.JobSpec) { s.Exclude = []string{"node1"} },
	}
	k0 := feasibilityKey(base)
	for i, f := range same {
		s := proto.Clone(base).(*api.JobSpec)
		f(s)
		if feasibilityKey(s) != k0 {
			t.Errorf("same[%d]: a change that cannot affect placement changed the key", i)
		}
	}
	for i, f := range differ {
		s := proto.Clone(base).(*api.JobSpec)
		f(s)
		if feasibilityKey(s) == k0 {
			t.Errorf("differ[%d]: a change that can affect placement kept the key", i)
		}
	}
}
