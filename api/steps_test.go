package api

import "testing"

func TestSlurmCounts(t *testing.T) {
	tests := []struct {
		in   []int
		want string
	}{
		{[]int{2, 2}, "2(x2)"},
		{[]int{2, 2, 2, 1}, "2(x3),1"},
		{[]int{1, 2, 1}, "1,2,1"},
		{nil, ""},
	}
	for _, tt := range tests {
		if got := SlurmCounts(tt.in); got != tt.want {
			t.Errorf("SlurmCounts(%v) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestParseJobStep(t *testing.T) {
	tests := []struct {
		in      string
		job     uint64
		step    uint32
		hasStep bool
		bad     bool
	}{
		{in: "12", job: 12},
		{in: "12.3", job: 12, step: 3, hasStep: true},
		{in: "12.batch", job: 12, step: StepBatch, hasStep: true},
		{in: "12.x", bad: true},
		{in: "0", bad: true},
		{in: "12.4294967291", bad: true}, // StepBatch as a number
	}
	for _, tt := range tests {
		job, step, has, err := ParseJobStep(tt.in)
		if (err != nil) != tt.bad {
			t.Errorf("ParseJobStep(%q) error = %v, want error %v", tt.in, err, tt.bad)
			continue
		}
		if !tt.bad && (job != tt.job || step != tt.step || has != tt.hasStep) {
			t.Errorf("ParseJobStep(%q) = %d, %d, %v, want %d, %d, %v", tt.in, job, step, has, tt.job, tt.step, tt.hasStep)
		}
	}
	if got := StepName(StepBatch); got != "batch" {
		t.Errorf("StepName(StepBatch) = %q, want batch", got)
	}
}
