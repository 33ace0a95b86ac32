package scheduler

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/loomhpc/loom/api"
)

// ServiceHistory is what the cluster has learned of job sizes from the
// jobs that finished: the GPU-seconds each used, kept per class of job
// (its account and GPU count), the most recent Window of each class. It
// knows nothing of a job before the job ends, so an estimate made from it
// never looks ahead. OrderGittins turns it into each job's Gittins index.
//
// A shell owns it and feeds it: `loom sim` adds each job as the replay
// finishes it; the leader adds the finished jobs of its state and of the
// accounting archive. It is safe for concurrent use.
type ServiceHistory struct {
	// Window is how many of each class's most recent jobs are kept; 0
	// means DefaultHistoryWindow.
	Window int
	// MinSamples is how many jobs a class needs before its own
	// distribution is used; fewer fall back to the jobs of that GPU count
	// in every account, then to every job. 0 means DefaultHistoryMinSamples.
	MinSamples int

	// SiblingWindow: jobs of one account and GPU count submitted within
	// this of each other are siblings (one sweep, one user's resubmits),
	// and a job whose siblings have finished is expected to be as large as
	// they were. 0 means DefaultSiblingWindow; negative, no siblings.
	SiblingWindow time.Duration

	// HeavyTail: a job that has attained more than every job of the
	// distribution it is indexed over is expected to need as much again
	// as it has had (index 1/attained), so such jobs take turns, least
	// attained first. Off (the default), it keeps the index of a job of
	// that largest size (an exponential tail: no sooner or later to end
	// for having run longer), so they are served first come first
	// served and finish one after another: on the Philly replay that
	// lowered the average JCT by 2% (docs/simulation.md).
	HeavyTail bool

	mu       sync.Mutex
	classes  map[historyKey]*serviceClass
	added    int
	siblings map[historyKey]*siblingSet
	known    map[uint64]*siblingSizes // per pending or running job
}

// FinishedJob is one finished job as a ServiceHistory learns it.
type FinishedJob struct {
	ID       uint64
	Account  string
	GPUs     int
	SubmitMs int64
	// GPUSeconds is the service it used over all its runs.
	GPUSeconds float64
}

// siblingSet is one class's finished jobs by submit time.
type siblingSet struct {
	jobs    []sibling // ascending SubmitMs
	version int       // bumped by every Add
}

type sibling struct {
	submitMs int64
	size     float64
}

// siblingSizes is a job's siblings' sizes, ascending, as of version.
type siblingSizes struct {
	version int
	sizes   []float64
}

// Defaults of the zero ServiceHistory.
const (
	DefaultHistoryWindow     = 2000
	DefaultHistoryMinSamples = 20
	DefaultSiblingWindow     = time.Hour
	// maxSiblings is how many finished jobs a class keeps for sibling
	// look-ups; the earliest submitted go first.
	maxSiblings = 20000
)

// historyKey names a class: an account and a GPU count, either of which
// may stand for "any" (the fallbacks).
type historyKey struct {
	account    string
	anyAccount bool
	gpus       int // -1: any
}

func (k historyKey) String() string {
	a, g := k.account, fmt.Sprint(k.gpus)
	if k.anyAccount {
		a = "*"
	}
	if k.gpus < 0 {
		g = "*"
	}
	return a + "/" + g
}

// serviceClass is one class's recent jobs and its Gittins indices.
type serviceClass struct {
	recent []float64 // ring of the newest GPU-seconds, oldest at next
	next   int
	sorted []float64 // recent, ascending, as of the last refresh
	stale  int       // jobs added since sorted was refreshed
	memo   map[int]float64
}

// HistoryGPUs is the GPU count a job of spec asks for, as ServiceHistory
// classes jobs: the total (-G), else GPUs per node times the nodes, else
// GPUs per task times the tasks.
func HistoryGPUs(s *api.JobSpec) int {
	switch {
	case s.GetGpus() > 0:
		return int(s.GetGpus())
	case s.GetGpusPerNode() > 0:
		return int(s.GetGpusPerNode()) * int(max(s.GetNodesMin(), 1))
	case s.GetGpusPerTask() > 0:
		return int(s.GetGpusPerTask()) * int(max(s.GetNtasks(), 1))
	}
	return 0
}

// Add records a finished job.
func (h *ServiceHistory) Add(f FinishedJob) {
	account, gpus, gpuSeconds := f.Account, f.GPUs, f.GPUSeconds
	if gpuSeconds < 0 || math.IsNaN(gpuSeconds) {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.classes == nil {
		h.classes = map[historyKey]*serviceClass{}
	}
	window := h.Window
	if window <= 0 {
		window = DefaultHistoryWindow
	}
	for _, k := range []historyKey{{account: account, gpus: gpus}, {anyAccount: true, gpus: gpus}, {anyAccount: true, gpus: -1}} {
		sc := h.classes[k]
		if sc == nil {
			sc = &serviceClass{}
			h.classes[k] = sc
		}
		sc.add(gpuSeconds, window)
	}
	h.added++
	if h.SiblingWindow < 0 {
		return
	}
	if h.siblings == nil {
		h.siblings, h.known = map[historyKey]*siblingSet{}, map[uint64]*siblingSizes{}
	}
	delete(h.known, f.ID)
	k := historyKey{account: account, gpus: gpus}
	ss := h.siblings[k]
	if ss == nil {
		ss = &siblingSet{}
		h.siblings[k] = ss
	}
	i, _ := slices.BinarySearchFunc(ss.jobs, f.SubmitMs, func(x sibling, t int64) int { return cmp.Compare(x.submitMs, t) })
	ss.jobs = slices.Insert(ss.jobs, i, sibling{submitMs: f.SubmitMs, size: gpuSeconds})
	if len(ss.jobs) > maxSiblings {
		ss.jobs = slices.Delete(ss.jobs, 0, len(ss.jobs)-maxSiblings)
	}
	ss.version++
}

// JobIndex is j's Gittins index at now: over the sizes of its finished
// siblings (jobs of its account and GPU count submitted within
// SiblingWindow of it) while it has attained less than the largest of
// them, else as Index over its class.
func (h *ServiceHistory) JobIndex(j *api.Job, now time.Time) float64 {
	account, gpus, attained := AccountOf(j), HistoryGPUs(j.GetSpec()), j.AttainedGPUSeconds(now)
	if h == nil {
		return h.Index(account, gpus, attained)
	}
	if sizes := h.siblingSizes(j, account, gpus); len(sizes) > 0 && attained < sizes[len(sizes)-1] {
		return gittins(sizes, attained, !h.HeavyTail)
	}
	return h.Index(account, gpus, attained)
}

// siblingSizes returns the sizes of j's finished siblings, ascending.
func (h *ServiceHistory) siblingSizes(j *api.Job, account string, gpus int) []float64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	ss := h.siblings[historyKey{account: account, gpus: gpus}]
	if ss == nil || h.SiblingWindow < 0 {
		return nil
	}
	if c := h.known[j.Id]; c != nil && c.version == ss.version {
		return c.sizes
	}
	w := h.SiblingWindow
	if w == 0 {
		w = DefaultSiblingWindow
	}
	lo, hi := j.SubmitUnixMs-w.Milliseconds(), j.SubmitUnixMs+w.Milliseconds()
	i, _ := slices.BinarySearchFunc(ss.jobs, lo, func(x sibling, t int64) int { return cmp.Compare(x.submitMs, t) })
	var sizes []float64
	for ; i < len(ss.jobs) && ss.jobs[i].submitMs <= hi; i++ {
		sizes = append(sizes, ss.jobs[i].size)
	}
	slices.Sort(sizes)
	h.known[j.Id] = &siblingSizes{version: ss.version, sizes: sizes}
	return sizes
}

// Len is how many jobs have been added.
func (h *ServiceHistory) Len() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.added
}

// Index returns the Gittins index, per GPU-second, of a job of account
// asking for gpus GPUs that has attained attained GPU-seconds of service:
// over the sizes of the class's finished jobs larger than attained, the
// best ratio, over every further service Δ, of the chance that the job
// ends within Δ more to the GPU-seconds it is expected to use trying.
// Higher is served first. With no history at all it is 1/(attained + an
// hour of one GPU): least attained service first.
func (h *ServiceHistory) Index(account string, gpus int, attained float64) float64 {
	attained = max(attained, 0)
	if h == nil {
		return 1 / (attained + 3600)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	least := h.MinSamples
	if least <= 0 {
		least = DefaultHistoryMinSamples
	}
	for _, k := range []historyKey{{account: account, gpus: gpus}, {anyAccount: true, gpus: gpus}, {anyAccount: true, gpus: -1}} {
		if sc := h.classes[k]; sc != nil && len(sc.recent) >= least {
			return sc.index(attained, !h.HeavyTail)
		}
	}
	if sc := h.classes[historyKey{anyAccount: true, gpus: -1}]; sc != nil && len(sc.recent) > 0 {
		return sc.index(attained, !h.HeavyTail)
	}
	return 1 / (attained + 3600)
}

func (sc *serviceClass) add(v float64, window int) {
	if len(sc.recent) < window {
		sc.recent = append(sc.recent, v)
	} else {
		sc.recent[sc.next] = v
		sc.next = (sc.next + 1) % window
	}
	sc.stale++
}

// refresh re-sorts the class's sizes once the jobs added since exceed
// 1/32 of them.
func (sc *serviceClass) refresh() {
	if sc.stale > 0 && (sc.sorted == nil || sc.stale*32 >= len(sc.sorted)) {
		sc.sorted = slices.Sorted(slices.Values(sc.recent))
		sc.stale = 0
		clear(sc.memo)
	}
}

// index is the class's Gittins index at attained, taken at the grid point
// at or below it (indices are memoised per grid point). The sorted sizes
// are refreshed once the jobs added since exceed 1/32 of them, so that a
// busy class is not re-sorted at every end.
func (sc *serviceClass) index(attained float64, flat bool) float64 {
	sc.refresh()
	g := gridPoint(attained)
	if x, ok := sc.memo[g]; ok {
		return x
	}
	x := gittins(sc.sorted, gridValue(g), flat)
	if sc.memo == nil {
		sc.memo = map[int]float64{}
	}
	sc.memo[g] = x
	return x
}

// The grid of attained service the indices are computed at: 0, then
// gridBase × gridRatio^(k-1) GPU-seconds.
const (
	gridBase  = 60.0
	gridRatio = 1.2
)

// gridPoint is the grid point at or below a.
func gridPoint(a float64) int {
	if a < gridBase {
		return 0
	}
	return 1 + int(math.Floor(math.Log(a/gridBase)/math.Log(gridRatio)+1e-9))
}

// gridValue is the attained service at grid point k.
func gridValue(k int) float64 {
	if k == 0 {
		return 0
	}
	return gridBase * math.Pow(gridRatio, float64(k-1))
}

// gittins is the Gittins index at attained service a of a job whose size
// is drawn from sorted (ascending): the largest, over the sizes s above a
// taken as the next stopping point, of P(size ≤ s | size > a) divided by
// E[min(size, s) − a | size > a]. A job larger than every size seen
// keeps the index of the largest size when flat (an exponential tail),
// else is expected to need as much again as it has had (a heavy tail):
// 1/a.
func gittins(sorted []float64, a float64, flat bool) float64 {
	i0, _ := slices.BinarySearch(sorted, math.Nextafter(a, math.Inf(1)))
	n := len(sorted)
	if i0 >= n {
		if flat && n > 0 {
			return 1 / max(sorted[n-1], 1)
		}
		return 1 / max(a, 1)
	}
	best, used := 0.0, 0.0
	for k := i0; k < n; k++ {
		used += sorted[k] - a
		if k+1 < n && sorted[k+1] == sorted[k] {
			continue
		}
		done := float64(k - i0 + 1)
		cost := used + float64(n-1-k)*(sorted[k]-a)
		if r := done / cost; r > best {
			best = r
		}
	}
	return best
}
