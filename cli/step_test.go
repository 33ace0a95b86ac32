package cli

import (
	"slices"
	"testing"

	"github.com/loomhpc/loom/api"
)

func TestScontrolShowHostnames(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  []string
		want string
	}{
		{"from the job's node list", []string{"show", "hostnames"}, []string{"SLURM_JOB_NODELIST=gpu[01-03],cpu7"}, "gpu01\ngpu02\ngpu03\ncpu7\n"},
		{"given", []string{"show", "hostnames", "node[1-2]"}, nil, "node1\nnode2\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			te := newTestEnv("scontrol", "127.0.0.1:1", tt.env...)
			if code := te.run(t, tt.args...); code != 0 {
				t.Fatalf("scontrol %q = %d: %s", tt.args, code, te.err)
			}
			if got := te.out.String(); got != tt.want {
				t.Errorf("scontrol %q printed %q, want %q", tt.args, got, tt.want)
			}
		})
	}
	te := newTestEnv("scontrol", "127.0.0.1:1")
	if code := te.run(t, "show", "hostnames"); code != 1 {
		t.Errorf("scontrol show hostnames without SLURM_JOB_NODELIST = %d, want 1", code)
	}
}

func TestParseJobSteps(t *testing.T) {
	jobs, steps, err := parseJobSteps([]string{"12,13.2", "14.batch 15"})
	if err != nil {
		t.Fatal(err)
	}
	if want := []uint64{12, 15}; !slices.Equal(jobs, want) {
		t.Errorf("jobs = %v, want %v", jobs, want)
	}
	if want := []jobStep{{13, 2}, {14, api.StepBatch}}; !slices.Equal(steps, want) {
		t.Errorf("steps = %v, want %v", steps, want)
	}
	if _, _, err := parseJobSteps([]string{"12.x"}); err == nil {
		t.Error("parseJobSteps(12.x) succeeded, want an error")
	}
}

func TestSacctRows(t *testing.T) {
	j := &api.Job{Id: 7, Spec: &api.JobSpec{Name: "train", Script: "x"}, State: api.JobState_COMPLETED,
		Allocation: &api.Allocation{Nodes: []string{"n1"}},
		Steps: []*api.Step{
			{Id: api.StepBatch, State: api.JobState_COMPLETED, Allocation: &api.Allocation{Nodes: []string{"n1"}}},
			{Id: 0, State: api.JobState_FAILED, ExitCode: 3, Spec: &api.JobSpec{Name: "python"}, Allocation: &api.Allocation{Nodes: []string{"n1"}}},
		}}
	var got []string
	for _, r := range sacctRows(j, false) {
		got = append(got, r.id()+" "+r.GetSpec().GetName()+" "+stateName(r.GetState())+" "+exitCode(r.Job))
	}
	want := []string{"7 train COMPLETED 0:0", "7.batch batch COMPLETED 0:0", "7.0 python FAILED 3:0"}
	if !slices.Equal(got, want) {
		t.Errorf("sacctRows = %q, want %q", got, want)
	}
	if n := len(sacctRows(j, true)); n != 1 {
		t.Errorf("sacctRows with -X = %d rows, want 1", n)
	}
}
