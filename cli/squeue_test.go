package cli

import (
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/loomhpc/loom/api"
)

// testJobs is a small queue: a running gang, a pending gang with a
// reservation, a pending job of another user, and a finished job.
func testJobs() []*api.Job {
	ranks := func(nodes []string, perNode int) []*api.Rank {
		var rs []*api.Rank
		for i, n := range nodes {
			for l := 0; l < perNode; l++ {
				rs = append(rs, &api.Rank{Rank: uint32(len(rs)), Node: n, NodeIndex: uint32(i), Cpus: 4, MemMb: 1000, GpuIndexes: []uint32{uint32(l)}})
			}
		}
		return rs
	}
	return []*api.Job{
		{Id: 11, User: "alice", Uid: 1000, State: api.JobState_COMPLETED, Spec: &api.JobSpec{Name: "prep", Partition: "gpu", Account: "vision"},
			SubmitUnixMs: ms(3 * time.Hour), StartUnixMs: ms(2 * time.Hour), EndUnixMs: ms(time.Hour), ExitCode: 0,
			Allocation: &api.Allocation{Nodes: []string{"node3"}, Ranks: ranks([]string{"node3"}, 1)}},
		{Id: 12, User: "alice", Uid: 1000, State: api.JobState_RUNNING, Priority: 10,
			Spec:         &api.JobSpec{Name: "train-resnet", Partition: "gpu", Account: "vision", NodesMin: 2, NtasksPerNode: 2, TimeLimitS: 7200},
			SubmitUnixMs: ms(2 * time.Hour), StartUnixMs: ms(65*time.Minute + 5*time.Second),
			Allocation: &api.Allocation{Nodes: []string{"node2", "node1"}, Ranks: ranks([]string{"node2", "node1"}, 2)}},
		{Id: 13, User: "alice", Uid: 1000, State: api.JobState_PENDING, Reason: "Resources", Priority: 50,
			Spec:                &api.JobSpec{Name: "big", Partition: "gpu", NodesMin: 4, Qos: "high", Comment: "needs 4"},
			SubmitUnixMs:        ms(time.Minute),
			ExpectedStartUnixMs: testNow.Add(90 * time.Minute).UnixMilli()},
		{Id: 14, User: "bob", Uid: 1001, State: api.JobState_PENDING, Priority: 5,
			Spec: &api.JobSpec{Name: "eval"}, SubmitUnixMs: ms(time.Minute)},
		{Id: 15, User: "alice", Uid: 1000, State: api.JobState_FAILED, Spec: &api.JobSpec{Name: "oops", Partition: "gpu"},
			SubmitUnixMs: ms(30 * time.Minute), StartUnixMs: ms(20 * time.Minute), EndUnixMs: ms(19 * time.Minute), ExitCode: 2, ExitSignal: 0,
			Allocation: &api.Allocation{Nodes: []string{"node4"}, Ranks: ranks([]string{"node4"}, 1)}},
	}
}

func TestSqueue(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{
			name: "default",
			want: "" +
				"             JOBID PARTITION     NAME     USER ST       TIME  NODES NODELIST(REASON)\n" +
				"                14     batch     eval      bob PD       0:00      1 (None)\n" +
				"                13       gpu      big    alice PD       0:00      4 (Resources)\n" +
				"                12       gpu train-re    alice  R    1:05:05      2 node[1-2]\n",
		},
		{
			name: "user and state filters",
			args: []string{"-u", "alice", "-t", "R,CD"},
			want: "" +
				"             JOBID PARTITION     NAME     USER ST       TIME  NODES NODELIST(REASON)\n" +
				"                12       gpu train-re    alice  R    1:05:05      2 node[1-2]\n" +
				"                11       gpu     prep    alice CD    1:00:00      1 node3\n",
		},
		{
			name: "jobs include finished ones",
			args: []string{"-j", "15,14", "--noheader"},
			want: "" +
				"                14     batch     eval      bob PD       0:00      1 (None)\n" +
				"                15       gpu     oops    alice  F       1:00      1 node4\n",
		},
		{
			name: "me",
			args: []string{"--me", "-t", "pending"},
			want: "" +
				"             JOBID PARTITION     NAME     USER ST       TIME  NODES NODELIST(REASON)\n" +
				"                13       gpu      big    alice PD       0:00      4 (Resources)\n",
		},
		{
			name: "start",
			args: []string{"--start"},
			want: "" +
				"             JOBID PARTITION     NAME     USER ST          START_TIME  NODES SCHEDNODES           NODELIST(REASON)\n" +
				"                14     batch     eval      bob PD                 N/A      1 (null)               (None)\n" +
				"                13       gpu      big    alice PD 2024-05-01T13:30:00      4 (null)               (Resources)\n",
		},
		{
			name: "long",
			args: []string{"-l", "-p", "gpu", "-t", "running"},
			want: "" +
				"             JOBID PARTITION     NAME     USER    STATE       TIME TIME_LIMI  NODES NODELIST(REASON)\n" +
				"                12       gpu train-re    alice  RUNNING    1:05:05   2:00:00      2 node[1-2]\n",
		},
		{
			// The expected output is written from squeue(1): --Format
			// fields are 20 wide and left aligned unless ".SIZE" is given;
			// the text after the size is printed after the field.
			name: "Format",
			args: []string{"-O", "JobID:.6|,name:8,UserName:6,STATE,TimeUsed:.8 ,ReasonList", "-t", "all", "-u", "alice"},
			want: "" +
				" JOBID|NAME    USER  STATE                   TIME NODELIST(REASON)\n" +
				"    13|big     alice PENDING                 0:00 (Resources)\n" +
				"    12|train-realice RUNNING              1:05:05 node[1-2]\n" +
				"    11|prep    alice COMPLETED            1:00:00 node3\n" +
				"    15|oops    alice FAILED                  1:00 node4\n",
		},
		{
			name: "comment, qos and account filters",
			args: []string{"-o", "%i %q %k", "-q", "high,low", "-t", "all"},
			want: "JOBID QOS COMMENT\n13 high needs 4\n",
		},
		{
			name: "account, name and nodelist filters",
			args: []string{"-h", "-o", "%i %a %j %N", "-A", "vision", "-t", "all", "-w", "node[2-3]"},
			want: "12 vision train-resnet node[1-2]\n11 vision prep node3\n",
		},
		{
			name: "name filter",
			args: []string{"-h", "-o", "%i", "-n", "eval,oops", "-t", "all", "-r"},
			want: "14\n15\n",
		},
		{
			// squeue(1): "-S -p" lists the highest priority first; "+"
			// or no sign sorts ascending, and later fields break ties.
			name: "sort",
			args: []string{"-h", "-o", "%i %u %p", "-S", "u,-p", "-t", "all"},
			want: "13 alice 50\n12 alice 10\n11 alice 0\n15 alice 0\n14 bob 5\n",
		},
		{
			name: "sort by Format name",
			args: []string{"-h", "-o", "%i", "-S", "-JobID", "-t", "all"},
			want: "15\n14\n13\n12\n11\n",
		},
		{
			name: "format",
			args: []string{"-o", "%i|%6u|%.30j|%5D%%|%C|%T|%S", "-t", "R,PD", "-u", "alice"},
			want: "" +
				"JOBID|USER  |                          NAME|NODES%|CPUS|STATE|START_TIME\n" +
				"13|alice |                           big|4    %|0|PENDING|2024-05-01T13:30:00\n" +
				"12|alice |                  train-resnet|2    %|16|RUNNING|2024-05-01T10:54:55\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeServer{jobs: testJobs()}
			te := newTestEnv("squeue", f.start(t))
			if code := te.run(t, tt.args...); code != 0 {
				t.Fatalf("squeue %q exited %d: %s", tt.args, code, te.err)
			}
			if got := te.out.String(); got != tt.want {
				t.Errorf("squeue %q printed\n%s\nwant\n%s", tt.args, got, tt.want)
			}
		})
	}
}

func TestSqueueRequest(t *testing.T) {
	f := &fakeServer{jobs: testJobs()}
	te := newTestEnv("squeue", f.start(t))
	if code := te.run(t, "-u", "bob", "-t", "CD"); code != 0 {
		t.Fatalf("squeue exited %d: %s", code, te.err)
	}
	req := f.lists[0]
	if req.GetUser() != "bob" || !req.GetAll() || !slices.Equal(req.GetStates(), []api.JobState{api.JobState_COMPLETED}) {
		t.Errorf("squeue -u bob -t CD sent %v, want user bob, all, states [COMPLETED]", req)
	}
}

// TestSqueuePages checks that squeue reads every page of a long listing,
// each after the last id of the one before.
func TestSqueuePages(t *testing.T) {
	f := &fakeServer{jobs: testJobs(), page: 2}
	te := newTestEnv("squeue", f.start(t))
	if code := te.run(t, "-t", "all", "-h", "-o", "%i"); code != 0 {
		t.Fatalf("squeue exited %d: %s", code, te.err)
	}
	got := strings.Fields(te.out.String())
	slices.Sort(got)
	if want := []string{"11", "12", "13", "14", "15"}; !slices.Equal(got, want) {
		t.Errorf("squeue over pages of 2 listed jobs %q, want %q", got, want)
	}
	var after []uint64
	for _, req := range f.lists {
		after = append(after, req.GetAfterId())
		if req.GetLimit() == 0 {
			t.Errorf("squeue sent %v without a page limit", req)
		}
	}
	if want := []uint64{0, 12, 14}; !slices.Equal(after, want) {
		t.Errorf("squeue asked for pages after ids %v, want %v", after, want)
	}
}

func TestSqueueJSON(t *testing.T) {
	f := &fakeServer{jobs: testJobs()}
	te := newTestEnv("squeue", f.start(t))
	if code := te.run(t, "--json", "-u", "alice"); code != 0 {
		t.Fatalf("squeue --json exited %d: %s", code, te.err)
	}
	var resp api.ListJobsResponse
	if err := protojson.Unmarshal(te.out.Bytes(), &resp); err != nil {
		t.Fatalf("squeue --json printed invalid JSON: %v\n%s", err, te.out)
	}
	var ids []uint64
	for _, j := range resp.GetJobs() {
		ids = append(ids, j.GetId())
	}
	if want := []uint64{13, 12}; !slices.Equal(ids, want) {
		t.Errorf("squeue --json -u alice listed jobs %v, want %v", ids, want)
	}
	if got := f.lists[0].GetView(); got != api.ListView_LIST_VIEW_SUMMARY {
		t.Errorf("squeue --json asked for view %v, want whole summaries", got)
	}
}

func TestSqueueErrors(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"-t", "BOGUS"}, "squeue: error: invalid job state \"BOGUS\" (want a name such as RUNNING or a code such as R)\n"},
		{[]string{"-j", "x1"}, "squeue: error: invalid job id \"x1\"\n"},
		{[]string{"--bogus"}, "squeue: error: unrecognized option '--bogus'\nTry \"squeue --help\" for more information\n"},
		{[]string{"-o", "%i %W"}, "squeue: error: --format=%i %W: unknown field %W\n"},
		{[]string{"-O", "JobID,Bogus"}, "squeue: error: --Format=JobID,Bogus: unknown field \"Bogus\"\n"},
		{[]string{"-O", "JobID:.x"}, "squeue: error: --Format=JobID:.x: field JobID: '.' needs a size, as in JobID:.10\n"},
		{[]string{"-S", "i,,P"}, "squeue: error: --sort=i,,P: empty field\n"},
		{[]string{"-S", "-bogus"}, "squeue: error: --sort=-bogus: unknown field \"bogus\"\n"},
		{[]string{"-o", "%i", "-O", "JobID"}, "squeue: error: give either --format (-o) or --Format (-O), not both\nTry \"squeue --help\" for more information\n"},
		{[]string{"-w", "node[2-1]"}, "squeue: error: --nodelist=node[2-1]: hostlist \"node[2-1]\": range \"2-1\" goes down\n"},
		{[]string{"-o", "%.18"}, "squeue: error: --format=%.18: ends inside a %-field\n"},
		{[]string{"extra"}, "squeue: error: unexpected argument \"extra\"\nTry \"squeue --help\" for more information\n"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			te := newTestEnv("squeue", "unused")
			if code := te.run(t, tt.args...); code != 1 {
				t.Errorf("squeue %q exited %d, want 1", tt.args, code)
			}
			if got := te.err.String(); got != tt.want {
				t.Errorf("squeue %q stderr = %q, want %q", tt.args, got, tt.want)
			}
		})
	}
}

// TestSqueueQueueView checks that squeue prints, filters and sorts the
// same from the queue view (api.Job.QueueView) as from whole jobs: every
// field it reads is in the view.
func TestSqueueQueueView(t *testing.T) {
	// Two tasks of one array sharing their spec, as in the state: the
	// queue view sends it once.
	arr := &api.JobSpec{Name: "arr", Partition: "gpu", Account: "nlp", Qos: "low", Reservation: "maint",
		Dependency: "afterok:12", Nice: 5, NodesMin: 1, Ntasks: 2, NtasksPerNode: 2, TimeLimitS: 600,
		GpusPerNode: 2, GpuType: "h100", GresPerNode: map[string]uint64{"nvme": 100}, WorkingDir: "/home/bob"}
	jobs := append(testJobs(), &api.Job{
		Id: 16, User: "bob", Uid: 1001, State: api.JobState_RUNNING, Priority: 7, ArrayJobId: 16, ArrayTaskId: 0,
		SubmitUnixMs: ms(time.Hour), StartUnixMs: ms(time.Minute), Spec: arr,
		Allocation: &api.Allocation{Nodes: []string{"node5"}, Ranks: []*api.Rank{{Node: "node5", Cpus: 3}, {Node: "node5", Rank: 1, Cpus: 5}}},
	}, &api.Job{
		Id: 17, User: "bob", Uid: 1001, State: api.JobState_PENDING, Priority: 7, ArrayJobId: 16, ArrayTaskId: 1,
		SubmitUnixMs: ms(time.Hour), Spec: arr,
	})
	var letters []string
	for c := range squeueFields {
		letters = append(letters, "%"+string(c))
	}
	slices.Sort(letters)
	every := strings.Join(letters, "|")
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"every field", []string{"-t", "all", "-o", every}},
		{"sorted by every field", []string{"-t", "all", "-o", every, "-S", strings.ReplaceAll(strings.Join(letters, ","), "%", "-")}},
		{"account, qos and name filters", []string{"-t", "all", "-o", "%i", "-A", "nlp,vision", "-q", "low", "-n", "arr,big"}},
		{"nodelist and partition filters", []string{"-t", "all", "-o", "%i", "-w", "node5", "-p", "gpu"}},
		{"long", []string{"-l"}},
		{"start", []string{"--start"}},
	} {
		args := tc.args
		t.Run(tc.name, func(t *testing.T) {
			var outs []string
			for _, whole := range []bool{true, false} {
				f := &fakeServer{jobs: jobs, wholeJobs: whole}
				te := newTestEnv("squeue", f.start(t))
				if code := te.run(t, args...); code != 0 {
					t.Fatalf("squeue %q = %d, stderr %q", args, code, te.err)
				}
				if got := f.lists[0].GetView(); got != api.ListView_LIST_VIEW_QUEUE {
					t.Errorf("squeue %q asked for view %v, want LIST_VIEW_QUEUE", args, got)
				}
				outs = append(outs, te.out.String())
			}
			if outs[0] != outs[1] {
				t.Errorf("squeue %q from the queue view:\n%s\nfrom whole jobs:\n%s", args, outs[1], outs[0])
			}
			if strings.Count(outs[0], "\n") < 2 {
				t.Errorf("squeue %q printed %q, want some jobs", args, outs[0])
			}
		})
	}
}
