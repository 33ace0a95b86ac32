package agent

import "testing"

func TestPruneOutputsKeepsRunningAndNewest(t *testing.T) {
	finished := make(chan struct{})
	close(finished)
	running := make(chan struct{})
	outs := map[outKey]taskOutput{}
	for job := uint64(1); job <= 10; job++ {
		done := finished
		if job == 2 {
			done = running // an old job still running
		}
		outs[outKey{job, 0, 0}] = taskOutput{done: done}
	}
	pruneOutputs(outs, 5)
	if len(outs) > 5 {
		t.Fatalf("%d outputs remembered, want at most 5", len(outs))
	}
	if _, ok := outs[outKey{2, 0, 0}]; !ok {
		t.Error("the running rank of job 2 was forgotten")
	}
	if _, ok := outs[outKey{10, 0, 0}]; !ok {
		t.Error("the newest job's output was forgotten")
	}
	if _, ok := outs[outKey{1, 0, 0}]; ok {
		t.Error("the oldest finished job's output was kept")
	}
}
