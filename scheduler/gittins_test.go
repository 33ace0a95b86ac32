package scheduler

import (
	"math"
	"testing"
	"time"

	"github.com/loomhpc/loom/api"
)

func TestGittins(t *testing.T) {
	// Three jobs of 100 GPU-s and one of 10,000: a new job is most likely
	// short, so its index is the rate of finishing by 100 GPU-s (3 of 4
	// finish, using 3×100 + 1×100); past 100 it is surely the long one.
	sizes := []float64{100, 100, 100, 10000}
	tests := []struct {
		attained, want float64
	}{
		{0, 3.0 / 400},
		{50, 3.0 / 200},      // closer to the common size: higher
		{99.5, 3.0 / 2},      // 3 of 4 end within half a GPU-second
		{100, 1.0 / 9900},    // past it: surely the long job
		{5000, 1.0 / 5000},   // half-way through the long job
		{9999, 1.0 / 1},      // a GPU-second from its end
		{20000, 1.0 / 20000}, // beyond every size seen: 1/attained
	}
	for _, tt := range tests {
		if got := gittins(sizes, tt.attained, false); math.Abs(got-tt.want) > 1e-12*tt.want {
			t.Errorf("gittins(%v, %g) = %g, want %g", sizes, tt.attained, got, tt.want)
		}
	}
}

func TestGittinsFlatTail(t *testing.T) {
	// Beyond every size seen, a flat tail keeps the index of the largest
	// size, whatever the job attained, so such jobs keep their order.
	sizes := []float64{100, 100, 100, 10000}
	for _, a := range []float64{10000, 20000, 1e6} {
		if got, want := gittins(sizes, a, true), 1.0/10000; got != want {
			t.Errorf("gittins(%v, %g, flat) = %g, want %g", sizes, a, got, want)
		}
	}
	if got, want := gittins(sizes, 50, true), gittins(sizes, 50, false); got != want {
		t.Errorf("gittins(%v, 50, flat) = %g, want %g (as without: within the sizes seen)", sizes, got, want)
	}
}

func TestServiceHistoryFallsBack(t *testing.T) {
	h := &ServiceHistory{MinSamples: 3}
	if got, want := h.Index("alice", 1, 0), 1.0/3600; got != want {
		t.Errorf("empty history: Index = %g, want %g (least attained first)", got, want)
	}
	// alice's 1-GPU jobs are short; everyone's 8-GPU jobs are long.
	for range 3 {
		h.Add(FinishedJob{Account: "alice", GPUs: 1, GPUSeconds: 100})
		h.Add(FinishedJob{Account: "bob", GPUs: 8, GPUSeconds: 80000})
	}
	h.Add(FinishedJob{Account: "bob", GPUs: 1, GPUSeconds: 50000})
	tests := []struct {
		account string
		gpus    int
		want    float64
	}{
		{"alice", 1, 1.0 / 100},       // her own class
		{"bob", 1, 3.0 / (4 * 100)},   // one job: the 1-GPU class of every account
		{"carol", 8, 1.0 / 80000},     // the 8-GPU class
		{"carol", 2, 3.0 / (7 * 100)}, // no 2-GPU job: every job
	}
	for _, tt := range tests {
		if got := h.Index(tt.account, tt.gpus, 0); math.Abs(got-tt.want) > 1e-12*tt.want {
			t.Errorf("Index(%q, %d, 0) = %g, want %g", tt.account, tt.gpus, got, tt.want)
		}
	}
	if h.Len() != 7 {
		t.Errorf("Len = %d, want 7", h.Len())
	}
}

func TestServiceHistoryWindow(t *testing.T) {
	h := &ServiceHistory{Window: 4, MinSamples: 1}
	for range 4 {
		h.Add(FinishedJob{Account: "a", GPUs: 1, GPUSeconds: 10000})
	}
	before := h.Index("a", 1, 0)
	// The class's jobs become short: once they fill the window, the old
	// long ones are forgotten.
	for range 4 {
		h.Add(FinishedJob{Account: "a", GPUs: 1, GPUSeconds: 100})
	}
	if after := h.Index("a", 1, 0); after != 1.0/100 || before != 1.0/10000 {
		t.Errorf("Index before = %g, after = %g; want %g, %g", before, after, 1.0/10000, 1.0/100)
	}
}

func TestGittinsOrdersByLearnedSize(t *testing.T) {
	t0 := time.Unix(1_000_000, 0)
	// Job 1 (8 GPUs, a class of long jobs) came first; job 2 (1 GPU, short
	// jobs) second. One node: job 2 starts, job 1 waits.
	h := &ServiceHistory{MinSamples: 1}
	for range 5 {
		h.Add(FinishedJob{Account: "u", GPUs: 8, GPUSeconds: 8 * 36000})
		h.Add(FinishedJob{Account: "u", GPUs: 1, GPUSeconds: 600})
	}
	long := pending(1, &api.JobSpec{GpusPerNode: 8})
	long.SubmitUnixMs = t0.Add(-time.Hour).UnixMilli()
	short := pending(2, &api.JobSpec{GpusPerNode: 1})
	short.SubmitUnixMs = t0.UnixMilli()
	long.User, short.User = "u", "u"
	v := &View{Nodes: []*api.Node{node("a", 8, 64)}, Jobs: []*api.Job{long, short}, History: h}
	p := Schedule(v, t0, Config{Order: OrderGittins, ReserveDepth: -1})
	if len(p.Placements) != 1 || p.Placements[0].JobId != 2 {
		t.Fatalf("placements = %v, want job 2 (short class) only", p.Placements)
	}
	// Without history the order is least attained service, then submit.
	v.History = nil
	p = Schedule(v, t0, Config{Order: OrderGittins, ReserveDepth: -1})
	if len(p.Placements) != 1 || p.Placements[0].JobId != 1 {
		t.Fatalf("no history: placements = %v, want job 1 (submitted first)", p.Placements)
	}
}

func TestGittinsPreempts(t *testing.T) {
	t0 := time.Unix(1_000_000, 0)
	h := &ServiceHistory{MinSamples: 1}
	for range 5 {
		h.Add(FinishedJob{Account: "u", GPUs: 8, GPUSeconds: 8 * 36000}) // 10 h on 8 GPUs
		h.Add(FinishedJob{Account: "u", GPUs: 4, GPUSeconds: 4 * 600})   // 10 min on 4 GPUs
	}
	all := gpuRank("a", 0, 1, 2, 3, 4, 5, 6, 7)
	tests := []struct {
		name   string
		long   *api.Job
		margin float64
		want   bool
	}{
		// Past 10 h, more than any 8-GPU job seen: index 1/(8×11 h).
		{"ran past its class", running(1, &api.JobSpec{GpusPerNode: 8}, t0.Add(-11*time.Hour), all), 0, true},
		{"--no-requeue", running(1, &api.JobSpec{GpusPerNode: 8, Requeue: new(false)}, t0.Add(-11*time.Hour), all), 0, false},
		{"within its minimum run", running(1, &api.JobSpec{GpusPerNode: 8}, t0.Add(-time.Minute), all), 0, false},
		// The newcomer's index, 1/2400, is 132 times the victim's: a margin
		// of 1000 protects it.
		{"under the margin", running(1, &api.JobSpec{GpusPerNode: 8}, t0.Add(-11*time.Hour), all), 1000, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.long.User = "u"
			short := pending(2, &api.JobSpec{GpusPerNode: 4})
			short.User, short.SubmitUnixMs = "u", t0.UnixMilli()
			v := &View{Nodes: []*api.Node{node("a", 8, 64)}, Jobs: []*api.Job{tt.long, short}, History: h}
			p := Schedule(v, t0, Config{Order: OrderGittins, LAS: LASConfig{GittinsMargin: tt.margin}})
			got := len(p.Preemptions) == 1 && p.Preemptions[0].JobId == 1 && p.Preemptions[0].ForJobId == 2
			if got != tt.want {
				t.Fatalf("preemptions = %v, want job 1 preempted for job 2: %v", p.Preemptions, tt.want)
			}
			if tt.want && reasonOf(p, 2) != ReasonPreempting {
				t.Errorf("job 2: %s, want %s", reasonOf(p, 2), ReasonPreempting)
			}
		})
	}
}

func TestServiceHistorySiblings(t *testing.T) {
	t0 := time.Unix(1_000_000, 0)
	h := &ServiceHistory{MinSamples: 1, SiblingWindow: 10 * time.Minute}
	// The 1-GPU class is long, but two jobs submitted a minute before
	// job 9 were short: job 9 is expected to be short too, until it has
	// run longer than they did.
	for i := range 5 {
		h.Add(FinishedJob{ID: uint64(i + 1), Account: "u", GPUs: 1, SubmitMs: t0.Add(-48 * time.Hour).UnixMilli(), GPUSeconds: 36000})
	}
	job := pending(9, &api.JobSpec{GpusPerNode: 1})
	job.User, job.SubmitUnixMs = "u", t0.UnixMilli()
	if got, want := h.JobIndex(job, t0), 1.0/36000; got != want {
		t.Errorf("no siblings: JobIndex = %g, want %g (the class)", got, want)
	}
	for i := range 2 {
		h.Add(FinishedJob{ID: uint64(i + 6), Account: "u", GPUs: 1, SubmitMs: t0.Add(-time.Minute).UnixMilli(), GPUSeconds: 600})
	}
	if got, want := h.JobIndex(job, t0), 1.0/600; got != want {
		t.Errorf("short siblings: JobIndex = %g, want %g", got, want)
	}
	// Running past its siblings' size, it is judged by its class again.
	job.State, job.StartUnixMs = api.JobState_RUNNING, t0.Add(-20*time.Minute).UnixMilli()
	job.Allocation = &api.Allocation{Ranks: []*api.Rank{gpuRank("a", 0)}}
	if got, want := h.JobIndex(job, t0), h.Index("u", 1, 1200); got != want {
		t.Errorf("past its siblings: JobIndex = %g, want the class's %g", got, want)
	}
	// Without siblings, or for another account's job or one submitted an
	// hour later, the class decides.
	h2 := &ServiceHistory{MinSamples: 1, SiblingWindow: -1}
	for i := range 5 {
		h2.Add(FinishedJob{ID: uint64(i + 1), Account: "u", GPUs: 1, GPUSeconds: 36000})
	}
	h2.Add(FinishedJob{ID: 6, Account: "u", GPUs: 1, SubmitMs: t0.UnixMilli(), GPUSeconds: 600})
	job.State, job.StartUnixMs, job.Allocation = api.JobState_PENDING, 0, nil
	if got, want := h2.JobIndex(job, t0), 1.0/(6*600); got != want {
		t.Errorf("SiblingWindow -1: JobIndex = %g, want the class's %g", got, want)
	}
	other := pending(10, &api.JobSpec{GpusPerNode: 1})
	other.User, other.SubmitUnixMs = "v", t0.UnixMilli()
	late := pending(11, &api.JobSpec{GpusPerNode: 1})
	late.User, late.SubmitUnixMs = "u", t0.Add(time.Hour).UnixMilli()
	for _, j := range []*api.Job{other, late} {
		if got, want := h.JobIndex(j, t0), h.Index(AccountOf(j), 1, 0); got != want {
			t.Errorf("job %d: JobIndex = %g, want the class's %g", j.Id, got, want)
		}
	}
}

func TestGittinsPromotesStarvedGang(t *testing.T) {
	t0 := time.Unix(1_000_000, 0)
	h := &ServiceHistory{MinSamples: 1}
	for range 5 {
		h.Add(FinishedJob{Account: "u", GPUs: 8, GPUSeconds: 8 * 3600}) // an hour on 8 GPUs
		h.Add(FinishedJob{Account: "u", GPUs: 1, GPUSeconds: 60})
	}
	// The gang has waited 10 h, ten times the hour its class runs; the
	// 1-GPU job just came, of a far higher index. The default factor, 64,
	// promotes it only after 64 h.
	gang := pending(1, &api.JobSpec{Gpus: 8, NodesMin: 1})
	gang.User, gang.SubmitUnixMs = "u", t0.Add(-10*time.Hour).UnixMilli()
	short := pending(2, &api.JobSpec{Gpus: 1})
	short.User, short.SubmitUnixMs = "u", t0.UnixMilli()
	v := &View{Nodes: []*api.Node{node("a", 8, 64)}, Jobs: []*api.Job{gang, short}, History: h}
	for _, tt := range []struct {
		factor float64
		want   uint64
	}{{-1, 2}, {0, 2}, {20, 2}, {4, 1}} {
		p := Schedule(v, t0, Config{Order: OrderGittins, ReserveDepth: -1, LAS: LASConfig{PromoteFactor: tt.factor}})
		if len(p.Placements) != 1 || p.Placements[0].JobId != tt.want {
			t.Errorf("PromoteFactor %g: placements %v, want job %d only", tt.factor, p.Placements, tt.want)
		}
	}
}
