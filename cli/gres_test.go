package cli

import (
	"maps"
	"strings"
	"testing"

	"github.com/loomhpc/loom/api"
)

// TestParseGres: --gres as sbatch(1) of Slurm 22.05 describes it: a
// comma-separated list of name[[:type]:count], per node, the count 1 by
// default and taking k/K (×1024), m/M (×1024²), g/G, t/T and p/P
// suffixes; gpu:TYPE is one GPU of the type.
func TestParseGres(t *testing.T) {
	tests := []struct {
		in       string
		gpus     uint32
		gpuType  string
		gres     map[string]uint64
		wantErr  string // substring of the error
		previous *api.JobSpec
	}{
		{in: "gpu:a100:2,nvme:200", gpus: 2, gpuType: "a100", gres: map[string]uint64{"nvme": 200}},
		{in: "gpu:a100", gpus: 1, gpuType: "a100"},
		{in: "nvme:200", gres: map[string]uint64{"nvme": 200}},
		{in: "license_x", gres: map[string]uint64{"license_x": 1}},
		{in: "bandwidth:4K", gres: map[string]uint64{"bandwidth": 4 << 10}},
		{in: "bandwidth:4k", gres: map[string]uint64{"bandwidth": 4 << 10}},
		{in: "scratch:2g", gres: map[string]uint64{"scratch": 2 << 30}},
		{in: "scratch:3M,lic:2", gres: map[string]uint64{"scratch": 3 << 20, "lic": 2}},
		{in: "scratch:1T", gres: map[string]uint64{"scratch": 1 << 40}},
		{in: "scratch:1p", gres: map[string]uint64{"scratch": 1 << 50}},
		{in: "nvme:0", gres: nil},
		{in: "nvme:2(S:0)", gres: map[string]uint64{"nvme": 2}},
		{in: "nvme:100", previous: &api.JobSpec{GresPerNode: map[string]uint64{"lic": 1}}, gres: map[string]uint64{"nvme": 100}},
		{in: "none", previous: &api.JobSpec{GpusPerNode: 2, GresPerNode: map[string]uint64{"lic": 1}}},
		{in: "nvme:fast:200", wantErr: `"nvme:fast:200": nvme has no types in Loom; give nvme:COUNT`},
		{in: "nvme:fast", wantErr: `nvme has no types in Loom`},
		{in: "nvme:1x", wantErr: `nvme count "1x" is not a number`},
		{in: "nvme:99999999999999999999", wantErr: `nvme count "99999999999999999999" is too large`},
		{in: "nvme:16777216P", wantErr: `is too large`},
		{in: "nvme:1,nvme:2", wantErr: "nvme given twice"},
		{in: "gpu:1,gpu:2", wantErr: "gpu given twice"},
		{in: "nv me:1", wantErr: `generic resource name "nv me"`},
		{in: ":1", wantErr: "empty generic resource name"},
	}
	for _, tt := range tests {
		s := &api.JobSpec{}
		if tt.previous != nil {
			s = tt.previous
		}
		err := parseGres(s, tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("parseGres(%q) = %v, want an error containing %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("parseGres(%q) = %v", tt.in, err)
			continue
		}
		if s.GpusPerNode != tt.gpus || s.GpuType != tt.gpuType || !maps.Equal(s.GresPerNode, tt.gres) {
			t.Errorf("parseGres(%q): GPUs %d type %q gres %v, want %d %q %v", tt.in, s.GpusPerNode, s.GpuType, s.GresPerNode, tt.gpus, tt.gpuType, tt.gres)
		}
	}
}

// TestGresShown: a node's generic resources are in sinfo's %G and
// scontrol's Gres and GresUsed after its GPUs; a job's are in scontrol's
// TresPerNode (per node) and TRES and sacct's AllocTRES (the job's total).
func TestGresShown(t *testing.T) {
	f := &fakeServer{nodes: testNodes()}
	f.nodes[2].Node.Gres = map[string]uint64{"nvme": 3600, "license_x": 4}
	f.nodes[2].GresAllocated = map[string]uint64{"nvme": 200}
	te := newTestEnv("sinfo", f.start(t))
	if code := te.run(t, "-N", "-h", "-n", "gpu0[2-3]", "-o", "%N %G"); code != 0 {
		t.Fatalf("sinfo exited %d: %s", code, te.err)
	}
	if got, want := te.out.String(), "gpu02 gpu:h100:8\ngpu03 gpu:h100:8,license_x:4,nvme:3600\n"; got != want {
		t.Errorf("sinfo -o '%%N %%G' printed\n%s\nwant\n%s", got, want)
	}
	te = newTestEnv("scontrol", f.start(t))
	if code := te.run(t, "show", "node", "gpu03"); code != 0 {
		t.Fatalf("scontrol show node exited %d: %s", code, te.err)
	}
	for _, want := range []string{"   Gres=gpu:h100:8,license_x:4,nvme:3600\n", "   GresUsed=gpu:h100:0,license_x:0,nvme:200\n"} {
		if !strings.Contains(te.out.String(), want) {
			t.Errorf("scontrol show node gpu03 printed\n%s\nwant a line %q", te.out, want)
		}
	}

	j := &fakeServer{jobs: testJobs()}
	j.jobs[1].Spec.GresPerNode = map[string]uint64{"nvme": 200}
	j.jobs[1].Allocation.GresPerNode = map[string]uint64{"nvme": 200}
	addr := j.start(t)
	te = newTestEnv("scontrol", addr)
	if code := te.run(t, "show", "job", "12"); code != 0 {
		t.Fatalf("scontrol show job exited %d: %s", code, te.err)
	}
	for _, want := range []string{"   TRES=cpu=16,gres/gpu=4,gres/nvme=400,mem=4000M,node=2\n", " TresPerNode=gres/nvme:200 "} {
		if !strings.Contains(te.out.String(), want) {
			t.Errorf("scontrol show job 12 printed\n%s\nwant %q", te.out, want)
		}
	}
	te = newTestEnv("squeue", addr)
	if code := te.run(t, "-h", "-j", "12", "-o", "%i %b"); code != 0 {
		t.Fatalf("squeue exited %d: %s", code, te.err)
	}
	if got, want := te.out.String(), "12 nvme:200\n"; got != want {
		t.Errorf("squeue -o '%%i %%b' printed %q, want %q", got, want)
	}
	te = newTestEnv("sacct", addr)
	if code := te.run(t, "-P", "-n", "-X", "--format=JobID,AllocTRES", "-j", "12"); code != 0 {
		t.Fatalf("sacct exited %d: %s", code, te.err)
	}
	if got, want := te.out.String(), "12|cpu=16,gres/gpu=4,gres/nvme=400,mem=4000M,node=2\n"; got != want {
		t.Errorf("sacct AllocTRES printed %q, want %q", got, want)
	}
}
