package scheduler

import (
	"testing"
	"time"

	"github.com/loomhpc/loom/api"
)

func reasonOf(p *Plan, id uint64) string {
	for _, pr := range p.Pending {
		if pr.JobId == id {
			return pr.Reason
		}
	}
	for _, pl := range p.Placements {
		if pl.JobId == id {
			return "placed"
		}
	}
	return ""
}

func TestDependencies(t *testing.T) {
	t0 := time.Unix(10_000, 0)
	done := func(id uint64, st api.JobState) *api.Job {
		return &api.Job{Id: id, Spec: &api.JobSpec{}, State: st, StartUnixMs: 1, EndUnixMs: 2}
	}
	history := map[uint64]*api.Job{
		100: done(100, api.JobState_COMPLETED),
		101: done(101, api.JobState_FAILED),
		102: {Id: 102, Spec: &api.JobSpec{}, State: api.JobState_RUNNING, StartUnixMs: 1},
		103: {Id: 103, Spec: &api.JobSpec{}, State: api.JobState_PENDING},
	}
	tests := []struct {
		dep  string
		want string
	}{
		{"afterok:100", "placed"},
		{"afterok:101", ReasonDependencyNeverSatisfied},
		{"afternotok:101", "placed"},
		{"afternotok:100", ReasonDependencyNeverSatisfied},
		{"afterany:101", "placed"},
		{"afterany:102", ReasonDependency},
		{"after:102", "placed"},
		{"after:103", ReasonDependency},
		{"afterok:100,afterany:102", ReasonDependency},
		{"afterok:101?afterany:100", "placed"},
		{"afterok:999", "placed"}, // purged long ago
		{"bogus:1", ReasonDependencyNeverSatisfied},
	}
	for _, tt := range tests {
		t.Run(tt.dep, func(t *testing.T) {
			j := pending(1, &api.JobSpec{Dependency: tt.dep})
			v := &View{Nodes: []*api.Node{node("a", 8, 64)}, Jobs: []*api.Job{j}, Lookup: func(id uint64) *api.Job { return history[id] }}
			if got := reasonOf(Schedule(v, t0, Config{}), 1); got != tt.want {
				t.Fatalf("--dependency=%s: %s, want %s", tt.dep, got, tt.want)
			}
		})
	}
}

func TestSingleton(t *testing.T) {
	t0 := time.Unix(10_000, 0)
	a := pending(1, &api.JobSpec{Name: "train", Dependency: "singleton"})
	b := pending(2, &api.JobSpec{Name: "train", Dependency: "singleton"})
	a.User, b.User = "alice", "alice"
	p := Schedule(&View{Nodes: []*api.Node{node("a", 8, 64)}, Jobs: []*api.Job{a, b}}, t0, Config{})
	if reasonOf(p, 1) != "placed" || reasonOf(p, 2) != ReasonDependency {
		t.Fatalf("singleton: job 1 %s, job 2 %s; want placed and Dependency", reasonOf(p, 1), reasonOf(p, 2))
	}
}

func TestEligibility(t *testing.T) {
	t0 := time.Unix(10_000, 0)
	tests := []struct {
		name string
		spec *api.JobSpec
		want string
	}{
		{"held", &api.JobSpec{Hold: true}, ReasonHeld},
		{"begin later", &api.JobSpec{BeginUnixMs: t0.Add(time.Hour).UnixMilli()}, ReasonBeginTime},
		{"begin passed", &api.JobSpec{BeginUnixMs: t0.Add(-time.Hour).UnixMilli()}, "placed"},
		{"no such partition", &api.JobSpec{Partition: "nope"}, ReasonPartition},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := &View{Nodes: []*api.Node{node("a", 8, 64)}, Jobs: []*api.Job{pending(1, tt.spec)}}
			if got := reasonOf(Schedule(v, t0, Config{}), 1); got != tt.want {
				t.Fatalf("%s, want %s", got, tt.want)
			}
		})
	}
}

func TestArrayTaskLimit(t *testing.T) {
	t0 := time.Unix(10_000, 0)
	var jobs []*api.Job
	for i := uint64(1); i <= 5; i++ {
		j := pending(i, &api.JobSpec{GpusPerNode: 1, Array: "0-4%2"})
		j.ArrayJobId, j.ArrayTaskId = 1, uint32(i-1)
		jobs = append(jobs, j)
	}
	jobs[0] = running(1, &api.JobSpec{GpusPerNode: 1, Array: "0-4%2"}, t0, gpuRank("a", 0))
	jobs[0].ArrayJobId = 1
	p := Schedule(&View{Nodes: []*api.Node{node("a", 8, 64)}, Jobs: jobs}, t0, Config{})
	if len(p.Placements) != 1 {
		t.Fatalf("placed %d array tasks with 1 of %%2 running, want 1", len(p.Placements))
	}
	for id := uint64(3); id <= 5; id++ {
		if r := reasonOf(p, id); r != ReasonArrayTaskLimit {
			t.Fatalf("task %d: %s, want %s", id, r, ReasonArrayTaskLimit)
		}
	}
}

func TestPreemptionPicksLeastLostWork(t *testing.T) {
	t0 := time.Unix(100_000, 0)
	cfg := Config{QOS: map[string]QOS{"high": {Priority: 10, Preempt: []string{"low"}}, "low": {}}}
	old := running(1, &api.JobSpec{GpusPerNode: 4, Qos: "low"}, t0.Add(-10*time.Hour), gpuRank("a", 0, 1, 2, 3))
	young := running(2, &api.JobSpec{GpusPerNode: 4, Qos: "low"}, t0.Add(-10*time.Minute), gpuRank("a", 4, 5, 6, 7))
	high := pending(3, &api.JobSpec{GpusPerNode: 4, Qos: "high"})
	normal := pending(4, &api.JobSpec{GpusPerNode: 4})
	v := &View{Nodes: []*api.Node{node("a", 8, 64)}, Jobs: []*api.Job{old, young, high, normal}}
	p := Schedule(v, t0, cfg)
	if len(p.Preemptions) != 1 || p.Preemptions[0].JobId != 2 || p.Preemptions[0].ForJobId != 3 {
		t.Fatalf("preemptions = %v, want job 2 (10 minutes of work) for job 3", p.Preemptions)
	}
	if r := reasonOf(p, 3); r != ReasonPreempting {
		t.Fatalf("job 3: %s, want %s", r, ReasonPreempting)
	}
	// Next cycle: the victim is requeued and its ranks are stopping. No
	// second victim is taken, and job 4 (normal QoS) preempts nothing.
	young2 := running(2, &api.JobSpec{GpusPerNode: 4, Qos: "low"}, t0.Add(-10*time.Minute), gpuRank("a", 4, 5, 6, 7))
	young2.State = api.JobState_PENDING
	v2 := &View{Nodes: v.Nodes, Jobs: []*api.Job{old, young2, high, normal}}
	if p := Schedule(v2, t0.Add(time.Second), cfg); len(p.Preemptions) != 0 {
		t.Fatalf("second cycle preempted %v again", p.Preemptions)
	}
}

func TestFairShareOrdersAccounts(t *testing.T) {
	t0 := time.Unix(1_000_000, 0)
	heavy := pending(1, &api.JobSpec{GpusPerNode: 8, Account: "heavy"})
	light := pending(2, &api.JobSpec{GpusPerNode: 8, Account: "light"})
	v := &View{Nodes: []*api.Node{node("a", 8, 64)}, Jobs: []*api.Job{heavy, light},
		AccountUsage: map[string]float64{"heavy": 1e6, "light": 1e3}}
	p := Schedule(v, t0, Config{})
	if len(p.Placements) != 1 || p.Placements[0].JobId != 2 {
		t.Fatalf("placed %v, want the light account's job 2 first", p.Placements)
	}
	f := Priorities(v, t0, Config{})
	if f[0].JobID != 2 || f[0].FairShare <= f[1].FairShare {
		t.Fatalf("factors = %+v, want job 2 first with the larger fair-share factor", f)
	}
}

func TestLedgerDecays(t *testing.T) {
	t0 := time.Unix(0, 0)
	l := &Ledger{HalfLife: time.Hour}
	l.Charge("a", 2, t0, t0.Add(time.Hour))
	at := l.At(t0.Add(2 * time.Hour))["a"]
	// 2 GPUs for an hour, seen 1-2 half-lives later: between 2·3600/4 and 2·3600/2.
	if at <= 1800 || at >= 3600 {
		t.Fatalf("decayed usage = %.0f, want between 1800 and 3600", at)
	}
	if direct := DecayedGPUSeconds(2, t0, t0.Add(time.Hour), t0.Add(2*time.Hour), time.Hour); direct-at > 1e-6 || at-direct > 1e-6 {
		t.Fatalf("ledger %.3f != direct %.3f", at, direct)
	}
}
