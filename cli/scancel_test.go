package cli

import (
	"slices"
	"strings"
	"testing"
)

func TestScancel(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantErr    string
		wantCancel []uint64 // job ids of the Cancel calls, in order
	}{
		{name: "one job", args: []string{"12"}, wantCancel: []uint64{12}},
		{name: "several jobs", args: []string{"12", "13,14"}, wantCancel: []uint64{12, 13, 14}},
		{name: "unknown job", args: []string{"99", "12"}, wantCode: 1,
			wantErr: "scancel: error: Kill job error on job id 99: no such job\n", wantCancel: []uint64{99, 12}},
		{name: "finished job", args: []string{"11"}, wantCode: 1,
			wantErr: "scancel: error: Kill job error on job id 11: job/step already completing or completed\n", wantCancel: []uint64{11}},
		{name: "my pending jobs", args: []string{"--me", "-t", "PD"}, wantCancel: []uint64{13}},
		{name: "by user", args: []string{"-u", "bob"}, wantCancel: []uint64{14}},
		{name: "by name", args: []string{"--me", "-n", "train-resnet"}, wantCancel: []uint64{12}},
		{name: "filters and ids", args: []string{"-u", "alice", "12", "14"}, wantCancel: []uint64{12}},
		{name: "nothing named", args: nil, wantCode: 1,
			wantErr: "scancel: error: no job identification provided\nTry \"scancel --help\" for more information\n"},
		{name: "bad id", args: []string{"12x"}, wantCode: 1, wantErr: "scancel: error: invalid job id \"12x\"\n"},
		{name: "array id", args: []string{"12_3"}, wantCode: 1, wantErr: "scancel: error: invalid job id \"12_3\": job arrays are not supported yet\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeServer{jobs: testJobs()}
			te := newTestEnv("scancel", f.start(t))
			if code := te.run(t, tt.args...); code != tt.wantCode {
				t.Errorf("scancel %q exited %d, want %d (stderr %q)", tt.args, code, tt.wantCode, te.err)
			}
			if got := te.err.String(); got != tt.wantErr {
				t.Errorf("scancel %q stderr = %q, want %q", tt.args, got, tt.wantErr)
			}
			if te.out.Len() != 0 {
				t.Errorf("scancel %q printed %q, want nothing", tt.args, te.out)
			}
			var got []uint64
			for _, c := range f.cancels {
				got = append(got, c.GetJobIds()...)
				if c.GetUser() != "" || c.GetUid() != 0 {
					t.Errorf("scancel %q sent user %q uid %d, want none (the server takes the caller from the connection)", tt.args, c.GetUser(), c.GetUid())
				}
			}
			if !slices.Equal(got, tt.wantCancel) {
				t.Errorf("scancel %q cancelled %v, want %v", tt.args, got, tt.wantCancel)
			}
		})
	}
}

func TestScancelHelp(t *testing.T) {
	te := newTestEnv("scancel", "unused")
	if code := te.run(t, "--help"); code != 0 || !strings.Contains(te.out.String(), "Usage: scancel") {
		t.Errorf("scancel --help = %d, %q; want 0 and usage", code, te.out)
	}
}
