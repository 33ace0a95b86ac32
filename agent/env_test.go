package agent

import (
	"strings"
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

// Every rank gets the job's secret from the servers, and a job cannot
// choose its own.
func TestRankEnvCarriesTheJobSecret(t *testing.T) {
	j := &api.Job{Id: 7, Secret: "ab12", Spec: &api.JobSpec{Env: map[string]string{api.EnvLoomJobSecret: "mine"}},
		Allocation: &api.Allocation{Ranks: []*api.Rank{{Rank: 0, Node: "a"}}, Nodes: []string{"a"}}}
	has := func(env []string, kv string) bool {
		for _, e := range env {
			if e == kv {
				return true
			}
		}
		return false
	}
	env := rankEnv(j, j.Allocation.Ranks[0], "a")
	if !has(env, api.EnvLoomJobSecret+"=ab12") || has(env, api.EnvLoomJobSecret+"=mine") {
		t.Errorf("rank env %v: want %s=ab12 only", env, api.EnvLoomJobSecret)
	}
	j.Secret = ""
	for _, e := range rankEnv(j, j.Allocation.Ranks[0], "a") {
		if strings.HasPrefix(e, api.EnvLoomJobSecret+"=") {
			t.Errorf("a job without a secret got %s", e)
		}
	}
}
