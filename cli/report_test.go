package cli

import (
	"strings"
	"testing"
	"time"

	"github.com/loomhpc/loom/api"
)

// reportJobs is a known history around 2024-05-01 (testNow is 12:00
// that day). Within the window 00:00-12:00, by hand:
//
//	1 alice/vision  4 GPUs 12 CPUs  ran 04-30 23:00-03:00, 3 h in: 12 GPU-h 36 CPU-h; started before
//	2 alice/vision  2 GPUs  4 CPUs  submitted 05:00, ran 05:30-07:30 FAILED: 4 GPU-h 8 CPU-h, wait 30 min
//	3 bob/nlp       8 GPUs 16 CPUs  submitted 08:00, running since 10:00: 16 GPU-h 32 CPU-h, wait 2 h
//	4 bob (no account) 1 GPU 2 CPUs submitted 09:00, ran 09:15-11:15 TIMEOUT: 2 GPU-h 4 CPU-h, wait 15 min
//	5 alice/nlp     pending since 11:00: nothing
//	6 bob/nlp       ran 04-30 10:00-11:00: before the window
//	7 carol/vision  cancelled while pending: nothing
//
// Two nodes of 8 GPUs and 32 CPUs report 16 × 12 = 192 GPU-h and 768
// CPU-h; 34 GPU-h and 80 CPU-h were allocated.
//
// Busy (utilization-weighted) GPU time, over each whole run: job 1 used 12
// of its 16 GPU-hours (75%, so 9 of the 12 in the window), job 2 1 of 4,
// job 3 14.4 of the 16 it has held (90%), job 4 none of 2. Busy in the
// window: alice/vision 9+1 = 10, bob/nlp 14.4, bob/bob 0; 24.4 in all.
func reportJobs() []*api.Job {
	at := func(s string) int64 {
		t, err := time.Parse("2006-01-02T15:04", s)
		if err != nil {
			panic(err)
		}
		return t.UnixMilli()
	}
	alloc := func(gpus, cpus int) *api.Allocation {
		r := &api.Rank{Node: "node1", Cpus: uint32(cpus)}
		for i := range gpus {
			r.GpuIndexes = append(r.GpuIndexes, uint32(i))
		}
		return &api.Allocation{Ranks: []*api.Rank{r}, Nodes: []string{"node1"}}
	}
	job := func(id uint64, user, account string, st api.JobState, submit, start, end string, gpus, cpus int) *api.Job {
		j := &api.Job{Id: id, User: user, State: st, Spec: &api.JobSpec{Account: account}}
		j.SubmitUnixMs = at(submit)
		if start != "" {
			j.StartUnixMs, j.Allocation = at(start), alloc(gpus, cpus)
		}
		if end != "" {
			j.EndUnixMs = at(end)
		}
		return j
	}
	jobs := []*api.Job{
		job(1, "alice", "vision", api.JobState_COMPLETED, "2024-04-30T22:00", "2024-04-30T23:00", "2024-05-01T03:00", 4, 12),
		job(2, "alice", "vision", api.JobState_FAILED, "2024-05-01T05:00", "2024-05-01T05:30", "2024-05-01T07:30", 2, 4),
		job(3, "bob", "nlp", api.JobState_RUNNING, "2024-05-01T08:00", "2024-05-01T10:00", "", 8, 16),
		job(4, "bob", "", api.JobState_TIMEOUT, "2024-05-01T09:00", "2024-05-01T09:15", "2024-05-01T11:15", 1, 2),
		job(5, "alice", "nlp", api.JobState_PENDING, "2024-05-01T11:00", "", "", 0, 0),
		job(6, "bob", "nlp", api.JobState_COMPLETED, "2024-04-30T09:00", "2024-04-30T10:00", "2024-04-30T11:00", 8, 16),
		job(7, "carol", "vision", api.JobState_CANCELLED, "2024-05-01T01:00", "", "2024-05-01T02:00", 0, 0),
	}
	jobs[0].UsedGpuMs = 12 * 3_600_000
	jobs[1].UsedGpuMs = 3_600_000
	jobs[2].UsedGpuMs = 51_840_000
	return jobs
}

func reportNodes() []*api.NodeInfo {
	var out []*api.NodeInfo
	for _, name := range []string{"node1", "node2"} {
		n := &api.Node{Name: name, Cpus: 32, Topology: &api.Topology{}}
		for i := range 8 {
			n.Topology.Gpus = append(n.Topology.Gpus, &api.GPU{Index: uint32(i)})
		}
		out = append(out, &api.NodeInfo{Node: n})
	}
	return out
}

func TestReport(t *testing.T) {
	window := []string{"start=2024-05-01", "end=2024-05-01T12:00"}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{
			name: "cluster utilization",
			args: append([]string{"cluster", "utilization"}, window...),
			want: "" +
				"--------------------------------------------------------------------------------\n" +
				"Cluster Utilization 2024-05-01T00:00:00 - 2024-05-01T11:59:59 (43200 secs)\n" +
				"Usage reported in TRES Hours\n" +
				"--------------------------------------------------------------------------------\n" +
				"Cluster TRES Name Allocated  Busy   Idle Reported\n" +
				"------- --------- --------- ----- ------ --------\n" +
				"loom    cpu           80.00       688.00   768.00\n" +
				"loom    gres/gpu      34.00 24.40 158.00   192.00\n",
		},
		{
			name: "cluster utilization in percent, parsable2",
			args: append([]string{"cluster", "utilization", "-t", "percent", "-P"}, window...),
			want: "" +
				"Cluster|TRES Name|Allocated|Busy|Idle|Reported\n" +
				"loom|cpu|10.42%||89.58%|100.00%\n" +
				"loom|gres/gpu|17.71%|12.71%|82.29%|100.00%\n",
		},
		{
			name: "user top",
			args: append([]string{"user", "top", "-n"}, window...),
			want: "" +
				"loom    alice vision      16.00    10.00    44.00    2 00:30:00\n" +
				"loom    bob   nlp         16.00    14.40    32.00    1 02:00:00\n" +
				"loom    bob   bob          2.00     0.00     4.00    1 00:15:00\n",
		},
		{
			name: "user top 1 in minutes, parsable",
			args: append([]string{"user", "top", "--topcount=1", "-t", "minutes", "-p"}, window...),
			want: "" +
				"Cluster|Login|Account|GPU Alloc|GPU Busy|CPU Used|Jobs|Avg Wait|\n" +
				"loom|alice|vision|960|600|2640|2|00:30:00|\n",
		},
		{
			name: "account usage",
			args: append([]string{"account", "usage", "-P"}, window...),
			want: "" +
				"Cluster|Account|Login|GPU Alloc|GPU Busy|CPU Used|Jobs|Avg Wait\n" +
				"loom|bob||2.00|0.00|4.00|1|00:15:00\n" +
				"loom|bob|bob|2.00|0.00|4.00|1|00:15:00\n" +
				"loom|nlp||16.00|14.40|32.00|1|02:00:00\n" +
				"loom|nlp|bob|16.00|14.40|32.00|1|02:00:00\n" +
				"loom|vision||16.00|10.00|44.00|2|00:30:00\n" +
				"loom|vision|alice|16.00|10.00|44.00|2|00:30:00\n",
		},
		{
			name: "account usage in percent",
			args: append([]string{"account", "usage", "-t", "percent"}, window...),
			// Of 192 GPU-h and 768 CPU-h: vision 16 GPU-h (8.33%) allocated,
			// 10 (5.21%) busy, 44 CPU-h (5.73%); nlp 16 (8.33%), 14.4
			// (7.50%), 32 (4.17%); bob 2 (1.04%), 0, 4 (0.52%).
			want: "" +
				"--------------------------------------------------------------------------------\n" +
				"Account Usage by User 2024-05-01T00:00:00 - 2024-05-01T11:59:59 (43200 secs)\n" +
				"Usage reported in TRES Percentage of Total\n" +
				"--------------------------------------------------------------------------------\n" +
				"Cluster Account Login GPU Alloc GPU Busy CPU Used Jobs Avg Wait\n" +
				"------- ------- ----- --------- -------- -------- ---- --------\n" +
				"loom    bob               1.04%    0.00%    0.52%    1 00:15:00\n" +
				"loom    bob     bob       1.04%    0.00%    0.52%    1 00:15:00\n" +
				"loom    nlp               8.33%    7.50%    4.17%    1 02:00:00\n" +
				"loom    nlp     bob       8.33%    7.50%    4.17%    1 02:00:00\n" +
				"loom    vision            8.33%    5.21%    5.73%    2 00:30:00\n" +
				"loom    vision  alice     8.33%    5.21%    5.73%    2 00:30:00\n",
		},
		{
			name: "the window as options: the last hour",
			args: []string{"account", "usage", "-P", "-n", "--start", "now-1hours", "--end", "now"},
			// 11:00-12:00: job 3 (8 GPUs, 16 CPUs, 90% busy) and 15 min of
			// job 4 (idle).
			want: "" +
				"loom|bob||0.25|0.00|0.50|1|00:00:00\n" +
				"loom|bob|bob|0.25|0.00|0.50|1|00:00:00\n" +
				"loom|nlp||8.00|7.20|16.00|1|00:00:00\n" +
				"loom|nlp|bob|8.00|7.20|16.00|1|00:00:00\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeServer{jobs: reportJobs(), nodes: reportNodes()}
			te := newTestEnv("report", f.start(t))
			if code := te.run(t, tt.args...); code != 0 {
				t.Fatalf("loom report %q exited %d: %s", tt.args, code, te.err)
			}
			if got := te.out.String(); got != tt.want {
				t.Errorf("loom report %q printed\n%s\nwant\n%s", tt.args, got, tt.want)
			}
			f.mu.Lock()
			defer f.mu.Unlock()
			if len(f.lists) != 1 || !f.lists[0].GetAll() {
				t.Errorf("ListJobs requests %v, want one with all (as sacct -a)", f.lists)
			}
		})
	}
}

func TestReportErrors(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"user", "bottom"}, `report "user bottom": want one of cluster utilization, user top, account usage`},
		{[]string{"user", "top", "-t", "days"}, "--time-format=days: want hours, minutes, seconds or percent"},
		{[]string{"user", "top", "start=yesterday"}, "start=yesterday: not a time"},
		{[]string{"user", "top", "start=2024-05-02", "end=2024-05-01"}, "end=2024-05-01 00:00:00 is not after start=2024-05-02 00:00:00"},
		{[]string{"user", "top", "topcount=0"}, "topcount=0: want a count of at least 1"},
		{[]string{"user", "top", "cluster=x"}, `unknown option "cluster=x"`},
	}
	for _, tt := range tests {
		te := newTestEnv("report", "unused")
		if code := te.run(t, tt.args...); code == 0 {
			t.Errorf("loom report %q exited 0", tt.args)
		}
		if got := te.err.String(); !strings.Contains(got, tt.want) {
			t.Errorf("loom report %q stderr = %q, want it to contain %q", tt.args, got, tt.want)
		}
	}
}

// TestReportUserWaste ranks users by idle allocated GPU time, by hand over
// reportJobs' window 00:00-12:00 and its busy figures. alice/vision: 16
// allocated, 10 busy, 6 wasted; bob/bob: 2, 0, 2; bob/nlp: 16, 14.4, 1.6.
func TestReportUserWaste(t *testing.T) {
	jobs := reportJobs()
	tests := []struct {
		args []string
		want string
	}{
		{
			args: []string{"user", "waste", "start=2024-05-01", "end=2024-05-01T12:00", "-P"},
			want: "" +
				"Cluster|Login|Account|GPU Alloc|GPU Busy|GPU Wasted|GPU Util|Jobs\n" +
				"loom|alice|vision|16.00|10.00|6.00|62.5%|2\n" +
				"loom|bob|bob|2.00|0.00|2.00|0.0%|1\n" +
				"loom|bob|nlp|16.00|14.40|1.60|90.0%|1\n",
		},
		{
			args: []string{"user", "waste", "start=2024-05-01", "end=2024-05-01T12:00", "topcount=1", "-t", "minutes", "-n"},
			want: "loom    alice vision        960      600        360    62.5%    2\n",
		},
	}
	for _, tt := range tests {
		f := &fakeServer{jobs: jobs, nodes: reportNodes()}
		te := newTestEnv("report", f.start(t))
		if code := te.run(t, tt.args...); code != 0 {
			t.Fatalf("report %q exited %d: %s", tt.args, code, te.err)
		}
		if got := te.out.String(); got != tt.want {
			t.Errorf("report %q printed\n%s\nwant\n%s", tt.args, got, tt.want)
		}
	}
}

// TestReportModelUsage splits TestReportUserWaste's figures by GPU model:
// node1's GPUs 0-3 are h100s, its 4-7 and node2's a100s. Jobs 1, 2 and 4
// ran on GPUs 0-3 of node1; job 3 on all eight, half of it on each model.
// h100: 12+4+8+2 = 26 GPU-h allocated, 9+1+7.2+0 = 17.2 busy, of 4 GPUs
// × 12 h = 48 reported; a100: 8 allocated, 7.2 busy, of 12 × 12 = 144.
func TestReportModelUsage(t *testing.T) {
	jobs := reportJobs()
	nodes := reportNodes()
	for _, n := range nodes {
		for _, g := range n.Node.Topology.Gpus {
			g.Model = "NVIDIA A100-SXM4-80GB"
			if n.Node.Name == "node1" && g.Index < 4 {
				g.Model = "NVIDIA H100 80GB HBM3"
			}
		}
	}
	// A job on a node that left the cluster: its GPUs' model is unknown.
	gone := &api.Job{Id: 8, User: "carol", State: api.JobState_COMPLETED, Spec: &api.JobSpec{},
		SubmitUnixMs: jobs[0].SubmitUnixMs, StartUnixMs: jobs[1].StartUnixMs, EndUnixMs: jobs[1].EndUnixMs,
		Allocation: &api.Allocation{Ranks: []*api.Rank{{Node: "node9", GpuIndexes: []uint32{0}}}}}
	jobs = append(jobs, gone)
	tests := []struct {
		args []string
		want string
	}{
		{
			args: []string{"model", "usage", "start=2024-05-01", "end=2024-05-01T12:00", "-P"},
			want: "" +
				"Cluster|GPU Model|GPUs|GPU Alloc|GPU Busy|GPU Wasted|GPU Util|Jobs|Reported\n" +
				"loom|NVIDIA A100-SXM4-80GB|12|8.00|7.20|0.80|90.0%|1|144.00\n" +
				"loom|NVIDIA H100 80GB HBM3|4|26.00|17.20|8.80|66.2%|4|48.00\n" +
				"loom|unknown|0|2.00|0.00|2.00|0.0%|1|0.00\n",
		},
		{
			args: []string{"model", "usage", "start=2024-05-01", "end=2024-05-01T12:00", "-t", "percent", "-n"},
			want: "" +
				"loom    NVIDIA A100-SXM4-80GB   12     5.56%    5.00%      0.56%    90.0%    1  100.00%\n" +
				"loom    NVIDIA H100 80GB HBM3    4    54.17%   35.83%     18.33%    66.2%    4  100.00%\n" +
				"loom    unknown                  0     0.00%    0.00%      0.00%     0.0%    1    0.00%\n",
		},
	}
	for _, tt := range tests {
		f := &fakeServer{jobs: jobs, nodes: nodes}
		te := newTestEnv("report", f.start(t))
		if code := te.run(t, tt.args...); code != 0 {
			t.Fatalf("report %q exited %d: %s", tt.args, code, te.err)
		}
		if got := te.out.String(); got != tt.want {
			t.Errorf("report %q printed\n%s\nwant\n%s", tt.args, got, tt.want)
		}
	}
}
