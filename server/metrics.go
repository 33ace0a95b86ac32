package server

import (
	"github.com/loomhpc/loom/clusterconf"
	"strconv"
	"sync"
	"time"

	"github.com/loomhpc/loom/api"
	"github.com/loomhpc/loom/raftnode"
	"github.com/loomhpc/loom/scheduler"
	"github.com/loomhpc/loom/state"
	"github.com/prometheus/client_golang/prometheus"
)

// metrics is the server's Prometheus collector. Gauges that describe the
// cluster are computed from the state at scrape time, so they can never
// drift from it; latencies and counters are recorded as they happen.
type metrics struct {
	s *Server

	jobs         *prometheus.Desc
	pending      *prometheus.Desc
	gpus         *prometheus.Desc
	nodes        *prometheus.Desc
	isLeader     *prometheus.Desc
	appliedIdx   *prometheus.Desc
	applyTime    *prometheus.HistogramVec
	cycleTime    prometheus.Histogram
	placed       prometheus.Counter
	rejected     prometheus.Counter
	applyErrors  *prometheus.CounterVec
	forwarded    prometheus.Counter
	nodeFailures prometheus.Counter
	detect       prometheus.Histogram
	requeues     *prometheus.Desc
	term         *prometheus.Desc
	commitIdx    *prometheus.Desc
	pendingWhy   *prometheus.Desc
	fairShare    *prometheus.Desc
	events       *jobEvents
	shares       fairShareCache // its own: the leader loop's is not shared
	sharesMu     sync.Mutex
}

func newMetrics(s *Server) *metrics {
	return &metrics{
		s:          s,
		jobs:       prometheus.NewDesc("loom_jobs", "Jobs in the state store by state.", []string{"state"}, nil),
		pending:    prometheus.NewDesc("loom_queue_pending_jobs", "Jobs waiting to be placed.", nil, nil),
		gpus:       prometheus.NewDesc("loom_gpus", "GPUs of registered nodes by state (allocated, idle, unavailable).", []string{"state"}, nil),
		nodes:      prometheus.NewDesc("loom_nodes", "Registered nodes by state.", []string{"state"}, nil),
		isLeader:   prometheus.NewDesc("loom_raft_leader", "1 when this server is the Raft leader.", nil, nil),
		appliedIdx: prometheus.NewDesc("loom_raft_applied_index", "Raft index of the state this server serves.", nil, nil),
		applyTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "loom_raft_apply_duration_seconds", Help: "Time to commit and apply one command, by command.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}, []string{"command"}),
		cycleTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "loom_scheduler_cycle_duration_seconds", Help: "Time of one scheduling cycle (snapshot to plan).",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}),
		placed:       prometheus.NewCounter(prometheus.CounterOpts{Name: "loom_scheduler_placements_total", Help: "Gangs placed."}),
		rejected:     prometheus.NewCounter(prometheus.CounterOpts{Name: "loom_scheduler_plan_rejections_total", Help: "Placements the FSM refused as conflicting."}),
		applyErrors:  prometheus.NewCounterVec(prometheus.CounterOpts{Name: "loom_raft_apply_errors_total", Help: "Commands that failed to commit."}, []string{"command"}),
		forwarded:    prometheus.NewCounter(prometheus.CounterOpts{Name: "loom_server_forwarded_requests_total", Help: "Requests this server forwarded to the leader."}),
		term:         prometheus.NewDesc("loom_raft_term", "Current Raft term.", nil, nil),
		nodeFailures: prometheus.NewCounter(prometheus.CounterOpts{Name: "loom_node_failures_total", Help: "Nodes this server, as leader, marked DOWN from gossip."}),
		detect: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "loom_node_down_detection_seconds", Help: "From the leader first missing a node in gossip to its NodeDown being committed.",
			Buckets: prometheus.ExponentialBuckets(0.25, 2, 8),
		}),
		requeues:  prometheus.NewDesc("loom_jobs_requeued_total", "Requeues of all jobs in the state (sum of restart counts).", nil, nil),
		commitIdx: prometheus.NewDesc("loom_raft_commit_index", "Raft commit index known to this server.", nil, nil),
		pendingWhy: prometheus.NewDesc("loom_jobs_pending", "Pending jobs by the reason they wait (squeue's REASON) and partition.",
			[]string{"reason", "partition"}, nil),
		fairShare: prometheus.NewDesc("loom_account_fairshare_factor",
			"Each account's fair-share factor, 2^(-usage/shares) between 0 and 1, before the priority weight.", []string{"account"}, nil),
		events: newJobEvents(),
	}
}

func (m *metrics) observeApply(c state.CommandType, d time.Duration, err error) {
	if err != nil {
		m.applyErrors.WithLabelValues(c.String()).Inc()
		return
	}
	m.applyTime.WithLabelValues(c.String()).Observe(d.Seconds())
}

func (m *metrics) observeCycle(d time.Duration) { m.cycleTime.Observe(d.Seconds()) }

func (m *metrics) observePlan(r *state.Result) {
	m.placed.Add(float64(r.Placed))
	m.rejected.Add(float64(r.Rejected))
}

func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{m.jobs, m.pending, m.gpus, m.nodes, m.isLeader, m.appliedIdx, m.term, m.commitIdx, m.requeues, m.pendingWhy, m.fairShare} {
		ch <- d
	}
	m.applyTime.Describe(ch)
	m.cycleTime.Describe(ch)
	m.placed.Describe(ch)
	m.rejected.Describe(ch)
	m.applyErrors.Describe(ch)
	m.forwarded.Describe(ch)
	m.nodeFailures.Describe(ch)
	m.detect.Describe(ch)
	m.events.describe(ch)
}

func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	snap := m.s.State()
	byState := map[api.JobState]int{}
	restarts := 0
	for j := range snap.Jobs() {
		byState[j.State]++
		restarts += int(j.RestartCount)
	}
	ch <- prometheus.MustNewConstMetric(m.requeues, prometheus.CounterValue, float64(restarts))
	for st := api.JobState_PENDING; st <= api.JobState_REQUEUED; st++ {
		ch <- prometheus.MustNewConstMetric(m.jobs, prometheus.GaugeValue, float64(byState[st]), st.String())
	}
	ch <- prometheus.MustNewConstMetric(m.pending, prometheus.GaugeValue, float64(byState[api.JobState_PENDING]))
	usage := snap.Usage()
	var alloc, idle, unavail int
	nodeStates := map[api.NodeState]int{}
	for n := range snap.Nodes() {
		info := nodeInfo(n, usage[n.Name])
		nodeStates[info.State]++
		total := len(n.GetTopology().GetGpus())
		if !n.Schedulable() {
			unavail += total - int(info.GpusAllocated)
			alloc += int(info.GpusAllocated)
			continue
		}
		alloc += int(info.GpusAllocated)
		idle += total - int(info.GpusAllocated)
	}
	ch <- prometheus.MustNewConstMetric(m.gpus, prometheus.GaugeValue, float64(alloc), "allocated")
	ch <- prometheus.MustNewConstMetric(m.gpus, prometheus.GaugeValue, float64(idle), "idle")
	ch <- prometheus.MustNewConstMetric(m.gpus, prometheus.GaugeValue, float64(unavail), "unavailable")
	for st := api.NodeState_IDLE; st <= api.NodeState_DOWN; st++ {
		ch <- prometheus.MustNewConstMetric(m.nodes, prometheus.GaugeValue, float64(nodeStates[st]), st.String())
	}
	leader := 0.0
	if m.s.IsLeader() {
		leader = 1
	}
	ch <- prometheus.MustNewConstMetric(m.isLeader, prometheus.GaugeValue, leader)
	ch <- prometheus.MustNewConstMetric(m.appliedIdx, prometheus.GaugeValue, float64(snap.Index()))
	m.applyTime.Collect(ch)
	m.cycleTime.Collect(ch)
	m.placed.Collect(ch)
	m.rejected.Collect(ch)
	m.applyErrors.Collect(ch)
	m.forwarded.Collect(ch)
	m.nodeFailures.Collect(ch)
	m.detect.Collect(ch)
	now := time.Now()
	m.events.collect(snap, now, ch)
	for k, n := range pendingByReason(snap) {
		ch <- prometheus.MustNewConstMetric(m.pendingWhy, prometheus.GaugeValue, float64(n), k[0], k[1])
	}
	m.collectFairShare(snap, now, ch)
	stats := m.s.raft.Stats()
	for desc, key := range map[*prometheus.Desc]string{m.term: "term", m.commitIdx: "commit_index"} {
		if v, err := strconv.ParseFloat(stats[key], 64); err == nil {
			ch <- prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, v)
		}
	}
}

// collectFairShare sends every account's fair-share factor, computed as
// the scheduler computes it for priorities. Concurrent scrapes share the
// usage cache, so it is guarded.
func (m *metrics) collectFairShare(snap *state.View, now time.Time, ch chan<- prometheus.Metric) {
	cfg := m.s.cfg.Scheduler
	if c := snap.Config(); c != nil {
		cfg = clusterconf.ToScheduler(c)
	}
	m.sharesMu.Lock()
	usage := m.shares.at(snap, now, cfg.Priority.FairShareHalfLife)
	m.sharesMu.Unlock()
	v := &scheduler.View{Lookup: snap.Job, AccountUsage: usage}
	for n := range snap.Nodes() {
		v.Nodes = append(v.Nodes, n)
	}
	for j := range snap.ActiveJobs() {
		v.Jobs = append(v.Jobs, j)
	}
	for a, f := range scheduler.FairShareFactors(v, now, cfg) {
		ch <- prometheus.MustNewConstMetric(m.fairShare, prometheus.GaugeValue, f, a)
	}
}

// caughtUpWith returns a function reporting whether rn has applied every
// log entry it held when caughtUpWith was called: after a restart, those
// entries are replayed history, not new events.
func caughtUpWith(rn *raftnode.Node) func() bool {
	index := func(key string) uint64 {
		n, _ := strconv.ParseUint(rn.Stats()[key], 10, 64)
		return n
	}
	last := index("last_log_index")
	done := false
	return func() bool {
		done = done || index("applied_index") >= last
		return done
	}
}
