package cli

import (
	"testing"
	"time"
)

func TestSacct(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{
			name: "my jobs since midnight",
			want: "" +
				"JobID           JobName  Partition    Account  AllocCPUS      State ExitCode\n" +
				"------------ ---------- ---------- ---------- ---------- ---------- --------\n" +
				"11                 prep        gpu     vision          4  COMPLETED      0:0\n" +
				"12           train-res+        gpu     vision         16    RUNNING      0:0\n" +
				"13                  big        gpu                     0    PENDING      0:0\n" +
				"15                 oops        gpu                     4     FAILED      2:0\n",
		},
		{
			name: "named jobs of any user",
			args: []string{"-j", "14,15"},
			want: "" +
				"JobID           JobName  Partition    Account  AllocCPUS      State ExitCode\n" +
				"------------ ---------- ---------- ---------- ---------- ---------- --------\n" +
				"14                 eval      batch                     0    PENDING      0:0\n" +
				"15                 oops        gpu                     4     FAILED      2:0\n",
		},
		{
			name: "starttime window",
			args: []string{"-S", "now-30minutes", "-s", "F,CD"},
			want: "" +
				"JobID           JobName  Partition    Account  AllocCPUS      State ExitCode\n" +
				"------------ ---------- ---------- ---------- ---------- ---------- --------\n" +
				"15                 oops        gpu                     4     FAILED      2:0\n",
		},
		{
			name: "parsable2 with format",
			args: []string{"-a", "-P", "--format=JobID,User,State,Elapsed,NodeList,AllocTRES", "-j", "12,14"},
			want: "" +
				"JobID|User|State|Elapsed|NodeList|AllocTRES\n" +
				"12|alice|RUNNING|01:05:05|node[1-2]|cpu=16,gres/gpu=4,mem=4000M,node=2\n" +
				"14|bob|PENDING|00:00:00|None assigned|\n",
		},
		{
			name: "parsable with widths ignored",
			args: []string{"-p", "-n", "-o", "jobid%4,timelimit", "-j", "12,13"},
			want: "12|02:00:00|\n13|Partition_Limit|\n",
		},
		{
			name: "custom width",
			args: []string{"-o", "JobID%-5,JobName%20", "-j", "12"},
			want: "" +
				"JobID              JobName\n" +
				"----- --------------------\n" +
				"12            train-resnet\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeServer{jobs: testJobs()}
			te := newTestEnv("sacct", f.start(t))
			if code := te.run(t, tt.args...); code != 0 {
				t.Fatalf("sacct %q exited %d: %s", tt.args, code, te.err)
			}
			if got := te.out.String(); got != tt.want {
				t.Errorf("sacct %q printed\n%s\nwant\n%s", tt.args, got, tt.want)
			}
		})
	}
}

func TestSacctErrors(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--format=JobID,Bogus"}, "sacct: error: --format=JobID,Bogus: unknown field \"Bogus\"\n"},
		{[]string{"-S", "yesterday"}, "sacct: error: --starttime=yesterday: not a time: want YYYY-MM-DD[THH:MM[:SS]] or now-N{days,hours,minutes}\n"},
		{[]string{"-S", "now-3fortnights"}, "sacct: error: --starttime=now-3fortnights: unit \"fortnights\" is not one of seconds, minutes, hours, days, weeks\n"},
		{[]string{"-s", "XX"}, "sacct: error: invalid job state \"XX\" (want a name such as RUNNING or a code such as R)\n"},
	}
	for _, tt := range tests {
		te := newTestEnv("sacct", "unused")
		if code := te.run(t, tt.args...); code != 1 {
			t.Errorf("sacct %q exited %d, want 1", tt.args, code)
		}
		if got := te.err.String(); got != tt.want {
			t.Errorf("sacct %q stderr = %q, want %q", tt.args, got, tt.want)
		}
	}
}

func TestParseSacctTime(t *testing.T) {
	tests := []struct {
		in   string
		want time.Time
	}{
		{"2024-04-30", time.Date(2024, 4, 30, 0, 0, 0, 0, time.UTC)},
		{"2024-04-30T08:15", time.Date(2024, 4, 30, 8, 15, 0, 0, time.UTC)},
		{"2024-04-30T08:15:09", time.Date(2024, 4, 30, 8, 15, 9, 0, time.UTC)},
		{"now", testNow},
		{"now-2days", testNow.Add(-48 * time.Hour)},
		{"now-1hour", testNow.Add(-time.Hour)},
		{"now-90", testNow.Add(-90 * time.Second)},
	}
	for _, tt := range tests {
		got, err := parseSacctTime(tt.in, testNow, time.UTC)
		if err != nil || !got.Equal(tt.want) {
			t.Errorf("parseSacctTime(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
}

// TestSacctGPUHours checks Loom's GPU fields by hand: job 11 held one GPU
// for an hour and used 0.75 GPU-hours; job 12 has held four GPUs for
// 1:05:05 (15,620 GPU-seconds) and used two GPU-hours; job 15 held one
// GPU for a minute and used none.
func TestSacctGPUHours(t *testing.T) {
	jobs := testJobs()
	for _, j := range jobs {
		switch j.Id {
		case 11:
			j.UsedGpuMs = 2_700_000
		case 12:
			j.UsedGpuMs = 7_200_000
		}
	}
	f := &fakeServer{jobs: jobs}
	te := newTestEnv("sacct", f.start(t))
	args := []string{"-P", "--format=JobID,AllocGPUS,AllocGPUHours,UsedGPUHours,GPUUtil", "-j", "11,12,14,15"}
	if code := te.run(t, args...); code != 0 {
		t.Fatalf("sacct %q exited %d: %s", args, code, te.err)
	}
	want := "" +
		"JobID|AllocGPUS|AllocGPUHours|UsedGPUHours|GPUUtil\n" +
		"11|1|1.00|0.75|75.0%\n" +
		"12|4|4.34|2.00|46.1%\n" +
		"14|0|0.00|0.00|\n" +
		"15|1|0.02|0.00|0.0%\n"
	if got := te.out.String(); got != want {
		t.Errorf("sacct %q printed\n%s\nwant\n%s", args, got, want)
	}
}
