package agent

import (
	"slices"
	"strings"
	"testing"

	"github.com/loomhpc/loom/api"
	"github.com/loomhpc/loom/rankenv"
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

// Until the server issues LOOM_JOB_SECRET, ranks opt out of netcoll's
// authentication, unless the job brings its own secret.
func TestRankEnvNetcollOptOut(t *testing.T) {
	job := func(env map[string]string) *api.Job {
		return &api.Job{Id: 7, Spec: &api.JobSpec{Env: env}, Allocation: &api.Allocation{
			Nodes: []string{"a"}, Ranks: []*api.Rank{{Rank: 0, Node: "a"}},
		}}
	}
	has := func(env []string, kv string) bool { return slices.Contains(env, kv) }
	for _, c := range []struct {
		name string
		env  map[string]string
		want bool
	}{
		{"no secret", nil, true},
		{"job's own secret", map[string]string{rankenv.LoomJobSecret: "00112233445566778899aabbccddeeff"}, false},
	} {
		j := job(c.env)
		if got := has(rankEnv(j, j.Allocation.Ranks[0], "a"), "NETCOLL_INSECURE=1"); got != c.want {
			t.Errorf("%s: NETCOLL_INSECURE=1 in the rank's environment = %v, want %v", c.name, got, c.want)
		}
	}
}

// Every rank gets the job's secret from the servers, which wins over one
// the job names itself, and then needs no opt-out.
func TestRankEnvCarriesTheJobSecret(t *testing.T) {
	j := &api.Job{Id: 7, Secret: "ab12", Spec: &api.JobSpec{Env: map[string]string{rankenv.LoomJobSecret: "mine"}},
		Allocation: &api.Allocation{Ranks: []*api.Rank{{Rank: 0, Node: "a"}}, Nodes: []string{"a"}}}
	env := rankEnv(j, j.Allocation.Ranks[0], "a")
	if !slices.Contains(env, rankenv.LoomJobSecret+"=ab12") || slices.Contains(env, rankenv.LoomJobSecret+"=mine") || slices.Contains(env, "NETCOLL_INSECURE=1") {
		t.Errorf("rank env %v: want %s=ab12, not the job's own, and no NETCOLL_INSECURE", env, rankenv.LoomJobSecret)
	}
}

// Every step's tasks, the batch script's included, get the job's secret:
// netcoll in an srun step proves it to its peers.
func TestStepTasksGetTheJobSecret(t *testing.T) {
	secret := strings.Repeat("ab", 32)
	alloc := &api.Allocation{JobId: 7, Generation: 1, Nodes: []string{"n1"}, MasterAddr: "127.0.0.1", MasterPort: 29500,
		Ranks: []*api.Rank{{Rank: 0, Node: "n1", LocalSize: 1}}}
	j := &api.Job{Id: 7, User: "alice", Uid: 1001, Secret: secret, Spec: &api.JobSpec{Script: "srun true"}, Allocation: alloc}
	for _, st := range []*api.Step{
		{Id: api.StepBatch, Allocation: alloc},
		{Id: 0, Spec: &api.JobSpec{Argv: []string{"true"}}, Allocation: alloc},
	} {
		env := rankEnvMap(stepView(j, st), alloc.Ranks[0], "n1")
		if got := env[rankenv.LoomJobSecret]; got != secret {
			t.Errorf("step %s: %s = %q, want the job's secret", api.StepName(st.Id), rankenv.LoomJobSecret, got)
		}
		if env["NETCOLL_INSECURE"] != "" {
			t.Errorf("step %s: NETCOLL_INSECURE = %q for a job that has a secret", api.StepName(st.Id), env["NETCOLL_INSECURE"])
		}
	}
}

// TestStepPathFindsLoomsCommandsFirst: a host may also have Slurm's own
// srun in /usr/bin; inside a Loom allocation the job's srun must be Loom's.
func TestStepPathFindsLoomsCommandsFirst(t *testing.T) {
	alloc := &api.Allocation{JobId: 7, Generation: 1, Nodes: []string{"n1"}, MasterAddr: "127.0.0.1", MasterPort: 29500,
		Ranks: []*api.Rank{{Rank: 0, Node: "n1", LocalSize: 1}}}
	j := &api.Job{Id: 7, User: "alice", Uid: 1001, Spec: &api.JobSpec{Script: "srun true",
		Env: map[string]string{"PATH": "/usr/local/bin:/usr/bin:/bin"}}, Allocation: alloc}
	st := &api.Step{Id: api.StepBatch, Allocation: alloc}
	a := &Agent{cmdDir: "/var/lib/loom/bin"}
	a.cfg.Name = "n1"
	tk := &task{key: taskKey{job: 7, step: stepKey(api.StepBatch)}, job: stepView(j, st), rank: alloc.Ranks[0], full: j, step: st}
	var path string
	for _, kv := range a.stepEnv(tk) {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			path = v
		}
	}
	if want := "/var/lib/loom/bin:/usr/local/bin:/usr/bin:/bin"; path != want {
		t.Errorf("PATH = %q, want %q (Loom's command links first)", path, want)
	}
}
