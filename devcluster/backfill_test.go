package devcluster

import (
	"fmt"
	"testing"
	"time"

	"github.com/loomhpc/loom/api"
	"github.com/loomhpc/loom/internal/harness"
)

// TestBackfillDoesNotDelayGang: on two 8-GPU nodes, one node is busy with
// a job that ends within its 3 s limit; a 16-GPU gang then waits with a
// reservation for both nodes. A stream of 1-GPU jobs follows: those whose
// limit ends before the reservation may backfill onto the idle node, the
// others must wait. The gang starts no later than its reserved start
// (plus one scheduling cycle).
func TestBackfillDoesNotDelayGang(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster and runs jobs for several seconds")
	}
	// Start returns once both agents have registered.
	_, jobs := startCluster(t, 2)
	blocker := submit(t, jobs, &api.JobSpec{GpusPerNode: 8, TimeLimitS: 3, Script: "#!/bin/sh\nsleep 2\n"})
	harness.WaitFor(t, "the blocker to start", 10*time.Second, func() bool { return getJob(t, jobs, blocker).StartUnixMs != 0 })
	gang := submit(t, jobs, &api.JobSpec{NodesMin: 2, GpusPerNode: 8, TimeLimitS: 10, Script: "#!/bin/sh\ntrue\n"})

	var reserved int64
	var stream []uint64
	for i := 0; len(stream) < 12; i++ {
		if j := getJob(t, jobs, gang); j.State == api.JobState_PENDING && j.ExpectedStartUnixMs != 0 && reserved == 0 {
			reserved = j.ExpectedStartUnixMs
		}
		limit, script := int64(30), "#!/bin/sh\nsleep 20\n" // would delay the gang
		if i%2 == 0 {
			limit, script = 1, "#!/bin/sh\nsleep 0.2\n" // ends within its 1 s limit
		}
		stream = append(stream, submit(t, jobs, &api.JobSpec{GpusPerNode: 1, TimeLimitS: limit, Script: script, Name: fmt.Sprint("small", i)}))
		time.Sleep(100 * time.Millisecond)
	}
	harness.WaitFor(t, "the gang to start", 20*time.Second, func() bool {
		j := getJob(t, jobs, gang)
		if j.State == api.JobState_PENDING && j.ExpectedStartUnixMs != 0 && reserved == 0 {
			reserved = j.ExpectedStartUnixMs
		}
		return j.StartUnixMs != 0
	})
	g := getJob(t, jobs, gang)
	if reserved == 0 {
		t.Fatalf("the gang never showed a reservation (expected start)")
	}
	const cycle = 1000 // ms: one scheduling cycle plus the agents' end reports
	if g.StartUnixMs > reserved+cycle {
		t.Fatalf("gang started at %d, %d ms after its reservation at %d", g.StartUnixMs, g.StartUnixMs-reserved, reserved)
	}
	for i, id := range stream {
		j := getJob(t, jobs, id)
		if i%2 == 1 && j.StartUnixMs != 0 && j.StartUnixMs < g.StartUnixMs {
			t.Errorf("job %d (limit 30 s) started at %d, before the gang at %d: it could have delayed it", id, j.StartUnixMs, g.StartUnixMs)
		}
	}
	t.Logf("reserved start %d, gang start %d (%+d ms)", reserved, g.StartUnixMs, g.StartUnixMs-reserved)
}
