package api

import (
	"strings"
	"testing"
)

func TestValidateBounds(t *testing.T) {
	base := func() *JobSpec { return &JobSpec{Script: "#!/bin/sh\n"} }
	tests := []struct {
		name string
		edit func(*JobSpec)
		want string // "" for accepted, else a substring of the error
	}{
		{"plain", func(*JobSpec) {}, ""},
		{"cpus wrap", func(s *JobSpec) { s.Ntasks, s.CpusPerTask = 2, 2147483648 }, "--cpus-per-task: 2147483648 CPUs per task × 2 tasks"},
		{"cpus at the limit", func(s *JobSpec) { s.Ntasks, s.CpusPerTask = 1, 4294967295 }, ""},
		{"cpus per node wrap", func(s *JobSpec) { s.NodesMin, s.NtasksPerNode, s.CpusPerTask = 1, 65536, 65536 }, "--cpus-per-task"},
		{"gpus wrap", func(s *JobSpec) { s.Ntasks, s.GpusPerTask = 4, 1<<30 }, "--gpus-per-task"},
		{"tasks per node × nodes", func(s *JobSpec) { s.NodesMin, s.NtasksPerNode = 16384, 1<<20 }, "--ntasks-per-node"},
		{"name at the limit", func(s *JobSpec) { s.Name = strings.Repeat("x", MaxNameBytes) }, ""},
		{"name one over", func(s *JobSpec) { s.Name = strings.Repeat("x", MaxNameBytes+1) }, "--job-name: 257 bytes; at most 256"},
		{"name with escape", func(s *JobSpec) { s.Name = "a\x1b[2Jb" }, "--job-name"},
		{"account not utf-8", func(s *JobSpec) { s.Account = "\xff" }, "--account"},
		{"path one over", func(s *JobSpec) { s.Output = "/" + strings.Repeat("o", MaxPathBytes) }, "--output: 4097 bytes"},
		{"mount with newline", func(s *JobSpec) { s.Mounts = []string{"/a:/b\n"} }, "--mount"},
		{"too many mounts", func(s *JobSpec) { s.Mounts = make([]string, MaxMounts+1) }, "--mount: 257 mounts"},
		{"array expression too long", func(s *JobSpec) { s.Array = strings.Repeat("1,", MaxArrayExprBytes) }, "--array"},
		{"too many env vars", func(s *JobSpec) {
			s.Env = map[string]string{}
			for i := range MaxEnvVars + 1 {
				s.Env[strings.Repeat("V", 1+i%7)+string(rune('a'+i%26))+strings.Repeat("x", i/182)] = ""
			}
		}, "--export"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := base()
			tt.edit(s)
			err := ValidateSpec(s)
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("ValidateSpec = %v, want nil", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("ValidateSpec = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestParseArrayParts(t *testing.T) {
	at := strings.TrimSuffix(strings.Repeat("1,", MaxArrayParts), ",")
	if _, err := ParseArray(at); err != nil {
		t.Errorf("ParseArray(%d parts) = %v, want nil", MaxArrayParts, err)
	}
	if _, err := ParseArray(at + ",2"); err == nil || !strings.Contains(err.Error(), "1025 comma-separated parts; at most 1024") {
		t.Errorf("ParseArray(%d parts) = %v, want the parts limit", MaxArrayParts+1, err)
	}
}

func TestCheckArraySize(t *testing.T) {
	tasks, err := ParseArray("0-1000")
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckArraySize("0-1000", tasks, 1001); err != nil {
		t.Errorf("CheckArraySize(0-1000, 1001) = %v, want nil", err)
	}
	tasks, _ = ParseArray("0-1001")
	err = CheckArraySize("0-1001", tasks, 1001)
	if want := "--array=0-1001: task index 1001 is over the cluster's MaxArraySize-1 = 1000 (max_array_size = 1001)"; err == nil || err.Error() != want {
		t.Errorf("CheckArraySize(0-1001, 1001) = %v, want %q", err, want)
	}
}
