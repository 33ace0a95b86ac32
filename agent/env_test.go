package agent

import (
	"testing"

	"github.com/loomhpc/loom/api"
)

func TestTruncateOutputs(t *testing.T) {
	job := func(output, errPattern, mode string, restarts uint32, gen uint64) *api.Job {
		return &api.Job{
			Id: 7, Spec: &api.JobSpec{Output: output, Error: errPattern, OpenMode: mode, WorkingDir: "/w"},
			RestartCount: restarts,
			Allocation: &api.Allocation{Generation: gen, Ranks: []*api.Rank{
				{Rank: 0, Node: "a"}, {Rank: 1, Node: "b"},
			}},
		}
	}
	for _, c := range []struct {
		name             string
		j                *api.Job
		wantOut, wantErr bool
	}{
		{"per-rank file, first start", job("o-%t", "", "", 0, 1), true, false},
		{"per-rank stdout and stderr", job("o-%t", "e-%t", "", 0, 1), true, true},
		{"explicit truncate", job("o-%t", "", api.OpenModeTruncate, 0, 1), true, false},
		{"append", job("o-%t", "e-%t", api.OpenModeAppend, 0, 1), false, false},
		{"shared file", job("o-%j", "", "", 0, 1), false, false},
		{"shared stderr only", job("o-%t", "e-%j", "", 0, 1), true, false},
		{"requeued", job("o-%t", "", "", 1, 2), false, false},
		{"later generation", job("o-%t", "", "", 0, 3), false, false},
	} {
		j := c.j
		r := j.Allocation.Ranks[1]
		out, errPath := outputPaths(j, r)
		gotOut, gotErr := truncateOutputs(j, r, out, errPath)
		if gotOut != c.wantOut || gotErr != c.wantErr {
			t.Errorf("%s: truncate stdout=%v stderr=%v, want %v %v", c.name, gotOut, gotErr, c.wantOut, c.wantErr)
		}
	}
}
