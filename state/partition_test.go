package state

import (
	"strconv"
	"strings"
	"testing"

	"github.com/loomhpc/loom/api"
)

func partitionConfig(debugMax int64) *api.ClusterConfig {
	return &api.ClusterConfig{Partitions: []*api.PartitionConfig{
		{Name: "gpu", Features: []string{"a100"}, MaxTimeS: 86400, DefMemPerGpuMb: 4096, Qos: "normal"},
		{Name: "debug", Default: true, MaxTimeS: debugMax},
		{Name: "old", State: "DRAIN"},
		{Name: "off", State: "INACTIVE"},
		{Name: "down", State: "DOWN"},
		{Name: "chem", AllowAccounts: []string{"chem"}, MaxNodes: 2},
	}}
}

// TestSubmitTakesPartitionRules: the FSM fixes a submit's partition and the
// defaults it gives, and refuses what the partition does not allow, so
// every replica holds the same jobs.
func TestSubmitTakesPartitionRules(t *testing.T) {
	tests := []struct {
		name string
		spec *api.JobSpec
		want string // "" accepted
		part string
		time int64
		mem  uint64
		qos  string
	}{
		{"no partition: the default, its MaxTime as the limit", &api.JobSpec{Script: "x"}, "", "debug", 1800, 0, ""},
		{"a time under MaxTime stays", &api.JobSpec{Script: "x", TimeLimitS: 600}, "", "debug", 600, 0, ""},
		{"a time over MaxTime is refused", &api.JobSpec{Script: "x", TimeLimitS: 3600},
			"--time=1:00:00: over partition debug's MaxTime=30:00", "", 0, 0, ""},
		{"unlimited is over any MaxTime", &api.JobSpec{Script: "x", TimeLimitS: -1},
			"--time=UNLIMITED: over partition debug's MaxTime=30:00", "", 0, 0, ""},
		{"DefMemPerGPU and the partition QoS", &api.JobSpec{Script: "x", Partition: "gpu", GpusPerNode: 2}, "", "gpu", 86400, 4096, "normal"},
		{"a job's own memory stays", &api.JobSpec{Script: "x", Partition: "gpu", GpusPerNode: 2, MemPerNodeMb: 100}, "", "gpu", 86400, 0, "normal"},
		{"unknown partition", &api.JobSpec{Script: "x", Partition: "nope"},
			"--partition=nope: no such partition; defined are gpu, debug, old, off, down, chem", "", 0, 0, ""},
		{"DRAIN takes no new job", &api.JobSpec{Script: "x", Partition: "old"}, "--partition=old: partition is DRAIN", "", 0, 0, ""},
		{"INACTIVE takes no new job", &api.JobSpec{Script: "x", Partition: "off"}, "--partition=off: partition is INACTIVE", "", 0, 0, ""},
		{"DOWN takes jobs", &api.JobSpec{Script: "x", Partition: "down"}, "", "down", 0, 0, ""},
		{"an account not allowed", &api.JobSpec{Script: "x", Partition: "chem", Account: "phys"},
			`--partition=chem: account "phys" may not use it (AllowAccounts=chem; give one with --account)`, "", 0, 0, ""},
		{"no account: the user's name", &api.JobSpec{Script: "x", Partition: "chem"},
			`--partition=chem: account "alice" may not use it (AllowAccounts=chem; give one with --account)`, "", 0, 0, ""},
		{"over MaxNodes", &api.JobSpec{Script: "x", Partition: "chem", Account: "chem", NodesMin: 3},
			"--partition=chem: the job needs at least 3 nodes; MaxNodes=2", "", 0, 0, ""},
		{"several partitions", &api.JobSpec{Script: "x", Partition: "gpu,debug"}, "--partition=gpu,debug: a job may name one partition only", "", 0, 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := NewTestFSM()
			f.Apply(CmdSetConfig, &api.SetConfigCommand{Config: partitionConfig(1800), NowUnixMs: 1})
			res := submitAs(f, 1000, tt.spec, nil)
			err := res.Errs[0]
			if tt.want != "" {
				if err == nil || !strings.Contains(err.Error(), tt.want) {
					t.Fatalf("submit error = %v, want %q", err, tt.want)
				}
				if f.Store.View().NumJobs() != 0 {
					t.Fatal("a refused submit left a job")
				}
				return
			}
			if err != nil {
				t.Fatalf("submit: %v", err)
			}
			s := f.Store.View().Job(res.JobIDs[0]).Spec
			if s.Partition != tt.part || s.TimeLimitS != tt.time || s.MemPerGpuMb != tt.mem || s.Qos != tt.qos {
				t.Fatalf("spec = partition %q time %d mem/gpu %d qos %q, want %q %d %d %q",
					s.Partition, s.TimeLimitS, s.MemPerGpuMb, s.Qos, tt.part, tt.time, tt.mem, tt.qos)
			}
			if tt.spec.Partition == "" && tt.spec.TimeLimitS == 0 && s == tt.spec {
				t.Fatal("the submitted spec was changed in place")
			}
		})
	}
}

// TestReloadAppliesToNewSubmitsOnly: lowering a partition's MaxTime leaves
// the limits of jobs already submitted as they were, and refuses only new
// submits over it.
func TestReloadAppliesToNewSubmitsOnly(t *testing.T) {
	f := NewTestFSM()
	f.Apply(CmdSetConfig, &api.SetConfigCommand{Config: partitionConfig(3600), NowUnixMs: 1})
	long := submitAs(f, 1000, &api.JobSpec{Script: "x", TimeLimitS: 3000}, nil)
	dflt := submitAs(f, 1000, &api.JobSpec{Script: "x"}, nil)
	if long.Err != nil || dflt.Err != nil {
		t.Fatal(long.Err, dflt.Err)
	}
	f.Apply(CmdSetConfig, &api.SetConfigCommand{Config: partitionConfig(600), NowUnixMs: 2})
	v := f.Store.View()
	if got := v.Job(long.JobIDs[0]).Spec.TimeLimitS; got != 3000 {
		t.Errorf("job submitted under MaxTime=1h: limit %d after the reload, want 3000", got)
	}
	if got := v.Job(dflt.JobIDs[0]).Spec.TimeLimitS; got != 3600 {
		t.Errorf("job that took the old default: limit %d after the reload, want 3600", got)
	}
	if res := submitAs(f, 1000, &api.JobSpec{Script: "x", TimeLimitS: 3000}, nil); res.Errs[0] == nil ||
		!strings.Contains(res.Errs[0].Error(), "MaxTime=10:00") {
		t.Fatalf("new submit over the lowered MaxTime: %v, want refused naming MaxTime=10:00", res.Errs[0])
	}
	res := submitAs(f, 1000, &api.JobSpec{Script: "x"}, nil)
	if res.Errs[0] != nil || f.Store.View().Job(res.JobIDs[0]).Spec.TimeLimitS != 600 {
		t.Fatalf("new submit with no time: %v, want the new default 600", res.Errs[0])
	}
}

// TestSubmitStampsPartitionIsolation: the stored job carries its
// partition's private_tmp and allow_swap (and not the request's), so every
// replica hands agents the same choice.
func TestSubmitStampsPartitionIsolation(t *testing.T) {
	f := NewTestFSM()
	yes, no := true, false
	cfg := &api.ClusterConfig{Partitions: []*api.PartitionConfig{
		{Name: "shared", Default: true, PrivateTmp: &no, AllowSwap: &yes},
		{Name: "private", PrivateTmp: &yes},
	}}
	f.Apply(CmdSetConfig, &api.SetConfigCommand{Config: cfg, NowUnixMs: 1})
	for _, tt := range []struct {
		spec          *api.JobSpec
		wantTmp, swap string
	}{
		{&api.JobSpec{Script: "x"}, "false", "true"},
		{&api.JobSpec{Script: "x", Partition: "private", AllowSwap: &yes}, "true", "<nil>"},
	} {
		res := submitAs(f, 1000, tt.spec, nil)
		if res.Errs[0] != nil {
			t.Fatalf("submit: %v", res.Errs[0])
		}
		s := f.Store.View().Job(res.JobIDs[0]).Spec
		if got, swap := optBool(s.PrivateTmp), optBool(s.AllowSwap); got != tt.wantTmp || swap != tt.swap {
			t.Errorf("partition %q: private_tmp=%s allow_swap=%s, want %s %s", s.Partition, got, swap, tt.wantTmp, tt.swap)
		}
	}
	// A pending job moved to another partition takes that one's choice:
	// submitting to a shared partition and moving is no way around it.
	res := submitAs(f, 1000, &api.JobSpec{Script: "x", Partition: "shared"}, nil)
	up := f.Apply(CmdUpdateJob, &api.UpdateJobCommand{Uid: 1000, NowUnixMs: 2,
		Request: &api.UpdateJobRequest{JobId: res.JobIDs[0], Partition: &cfg.Partitions[1].Name}})
	if up.Err != nil {
		t.Fatalf("update partition: %v", up.Err)
	}
	s := f.Store.View().Job(res.JobIDs[0]).Spec
	if got, swap := optBool(s.PrivateTmp), optBool(s.AllowSwap); s.Partition != "private" || got != "true" || swap != "<nil>" {
		t.Errorf("moved to %q: private_tmp=%s allow_swap=%s, want private's true <nil>", s.Partition, got, swap)
	}
}

func optBool(b *bool) string {
	if b == nil {
		return "<nil>"
	}
	return strconv.FormatBool(*b)
}
