package cli

import (
	"strings"
	"testing"

	"github.com/loomhpc/loom/api"
)

// testPartitions: debug (the default, every node, 30 minutes), gpu (the
// nodes with h100 GPUs, two days), old (cpu1, draining) and off (no node,
// inactive). The agents' own partition names (batch) no longer show.
func testPartitions() *api.ClusterConfig {
	return &api.ClusterConfig{Partitions: []*api.PartitionConfig{
		{Name: "debug", Default: true, MaxTimeS: 1800, DefaultTimeS: 600},
		{Name: "gpu", Features: []string{"h100"}, MaxTimeS: 2 * 86400, AllowGroups: []string{"ml", "vision"},
			DenyAccounts: []string{"guest"}, PriorityTier: 2, DefMemPerGpuMb: 8192, MaxNodes: 4, Qos: "normal"},
		{Name: "old", Nodes: "cpu1", State: "DRAIN"},
		{Name: "off", Nodes: "spare[1-2]", State: "INACTIVE", PreemptMode: "OFF"},
	}}
}

func TestSinfoPartitions(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{
			name: "default",
			want: "" +
				"PARTITION AVAIL  TIMELIMIT  NODES  STATE NODELIST\n" +
				"debug*       up      30:00      2    mix gpu[01-02]\n" +
				"debug*       up      30:00      1  alloc cpu1\n" +
				"debug*       up      30:00      1   idle gpu03\n" +
				"debug*       up      30:00      1  drain gpu04\n" +
				"debug*       up      30:00      1   down gpu10\n" +
				"gpu          up 2-00:00:00      2    mix gpu[01-02]\n" +
				"gpu          up 2-00:00:00      1   idle gpu03\n" +
				"gpu          up 2-00:00:00      1  drain gpu04\n" +
				"gpu          up 2-00:00:00      1   down gpu10\n" +
				"old       drain   infinite      1  alloc cpu1\n" +
				"off       inact   infinite      0    n/a\n",
		},
		{
			name: "summarize one partition",
			args: []string{"-s", "-p", "gpu,old"},
			want: "" +
				"PARTITION AVAIL  TIMELIMIT  NODES(A/I/O/T) NODELIST\n" +
				"gpu          up 2-00:00:00         2/1/2/5 gpu[01-04,10]\n" +
				"old       drain   infinite         1/0/0/1 cpu1\n",
		},
		{
			name: "format",
			args: []string{"-o", "%P %a %l %D"},
			want: "" +
				"PARTITION AVAIL TIMELIMIT NODES\n" +
				"debug* up 30:00 6\n" +
				"gpu up 2-00:00:00 5\n" +
				"old drain infinite 1\n",
		},
		{
			name: "node oriented",
			args: []string{"-N", "-n", "gpu01,cpu1"},
			want: "" +
				"NODELIST  NODES PARTITION STATE\n" +
				"cpu1          1    debug* alloc\n" +
				"cpu1          1       old alloc\n" +
				"gpu01         1    debug* mix\n" +
				"gpu01         1       gpu mix\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeServer{nodes: testNodes(), config: testPartitions()}
			te := newTestEnv("sinfo", f.start(t))
			if code := te.run(t, tt.args...); code != 0 {
				t.Fatalf("sinfo %q exited %d: %s", tt.args, code, te.err)
			}
			if got := te.out.String(); got != tt.want {
				t.Errorf("sinfo %q printed\n%s\nwant\n%s", tt.args, got, tt.want)
			}
		})
	}
}

func TestScontrolShowPartition(t *testing.T) {
	f := &fakeServer{nodes: testNodes(), config: testPartitions()}
	te := newTestEnv("scontrol", f.start(t))
	if code := te.run(t, "show", "partition", "gpu"); code != 0 {
		t.Fatalf("scontrol show partition gpu exited %d: %s", code, te.err)
	}
	want := "" +
		"PartitionName=gpu\n" +
		"   AllowGroups=ml,vision DenyAccounts=guest AllowQos=ALL\n" +
		"   AllocNodes=ALL Default=NO QoS=normal\n" +
		"   DefaultTime=NONE DisableRootJobs=NO ExclusiveUser=NO GraceTime=0 Hidden=NO\n" +
		"   MaxNodes=4 MaxTime=2-00:00:00 MinNodes=0 LLN=NO MaxCPUsPerNode=UNLIMITED\n" +
		"   Nodes=gpu[01-04,10]\n" +
		"   PriorityJobFactor=1 PriorityTier=2 RootOnly=NO ReqResv=NO OverSubscribe=NO\n" +
		"   OverTimeLimit=NONE PreemptMode=REQUEUE\n" +
		"   State=UP TotalCPUs=320 TotalNodes=5 SelectTypeParameters=NONE\n" +
		"   JobDefaults=(null)\n" +
		"   DefMemPerGPU=8192 MaxMemPerNode=UNLIMITED\n\n"
	if got := te.out.String(); got != want {
		t.Errorf("scontrol show partition gpu printed\n%s\nwant\n%s", got, want)
	}
	te = newTestEnv("scontrol", f.start(t))
	if code := te.run(t, "-o", "show", "partition"); code != 0 {
		t.Fatalf("scontrol -o show partition exited %d: %s", code, te.err)
	}
	want = "" +
		"PartitionName=debug AllowGroups=ALL AllowAccounts=ALL AllowQos=ALL AllocNodes=ALL Default=YES QoS=N/A DefaultTime=00:10:00 DisableRootJobs=NO ExclusiveUser=NO GraceTime=0 Hidden=NO MaxNodes=UNLIMITED MaxTime=00:30:00 MinNodes=0 LLN=NO MaxCPUsPerNode=UNLIMITED Nodes=cpu1,gpu[01-04,10] PriorityJobFactor=1 PriorityTier=1 RootOnly=NO ReqResv=NO OverSubscribe=NO OverTimeLimit=NONE PreemptMode=REQUEUE State=UP TotalCPUs=384 TotalNodes=6 SelectTypeParameters=NONE JobDefaults=(null) DefMemPerNode=UNLIMITED MaxMemPerNode=UNLIMITED\n" +
		"PartitionName=gpu AllowGroups=ml,vision DenyAccounts=guest AllowQos=ALL AllocNodes=ALL Default=NO QoS=normal DefaultTime=NONE DisableRootJobs=NO ExclusiveUser=NO GraceTime=0 Hidden=NO MaxNodes=4 MaxTime=2-00:00:00 MinNodes=0 LLN=NO MaxCPUsPerNode=UNLIMITED Nodes=gpu[01-04,10] PriorityJobFactor=1 PriorityTier=2 RootOnly=NO ReqResv=NO OverSubscribe=NO OverTimeLimit=NONE PreemptMode=REQUEUE State=UP TotalCPUs=320 TotalNodes=5 SelectTypeParameters=NONE JobDefaults=(null) DefMemPerGPU=8192 MaxMemPerNode=UNLIMITED\n" +
		"PartitionName=old AllowGroups=ALL AllowAccounts=ALL AllowQos=ALL AllocNodes=ALL Default=NO QoS=N/A DefaultTime=NONE DisableRootJobs=NO ExclusiveUser=NO GraceTime=0 Hidden=NO MaxNodes=UNLIMITED MaxTime=UNLIMITED MinNodes=0 LLN=NO MaxCPUsPerNode=UNLIMITED Nodes=cpu1 PriorityJobFactor=1 PriorityTier=1 RootOnly=NO ReqResv=NO OverSubscribe=NO OverTimeLimit=NONE PreemptMode=REQUEUE State=DRAIN TotalCPUs=64 TotalNodes=1 SelectTypeParameters=NONE JobDefaults=(null) DefMemPerNode=UNLIMITED MaxMemPerNode=UNLIMITED\n" +
		"PartitionName=off AllowGroups=ALL AllowAccounts=ALL AllowQos=ALL AllocNodes=ALL Default=NO QoS=N/A DefaultTime=NONE DisableRootJobs=NO ExclusiveUser=NO GraceTime=0 Hidden=NO MaxNodes=UNLIMITED MaxTime=UNLIMITED MinNodes=0 LLN=NO MaxCPUsPerNode=UNLIMITED Nodes=(null) PriorityJobFactor=1 PriorityTier=1 RootOnly=NO ReqResv=NO OverSubscribe=NO OverTimeLimit=NONE PreemptMode=OFF State=INACTIVE TotalCPUs=0 TotalNodes=0 SelectTypeParameters=NONE JobDefaults=(null) DefMemPerNode=UNLIMITED MaxMemPerNode=UNLIMITED\n"
	if got := te.out.String(); got != want {
		t.Errorf("scontrol -o show partition printed\n%s\nwant\n%s", got, want)
	}
	te = newTestEnv("scontrol", f.start(t))
	if code := te.run(t, "show", "node", "cpu1"); code != 0 || !strings.Contains(te.out.String(), "\n   Partitions=debug,old\n") {
		t.Errorf("scontrol show node cpu1: exit %d, printed\n%s\nwant Partitions=debug,old (the configured ones that have it)", code, te.out.String())
	}
	te = newTestEnv("scontrol", f.start(t))
	if code := te.run(t, "show", "partition", "nope"); code != 1 || te.err.String() != "scontrol: error: Partition nope not found\n" {
		t.Errorf("scontrol show partition nope: exit %d, stderr %q; want 1 and Partition nope not found", code, te.err.String())
	}
}

func TestSinfoSort(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"-S", "-D,P", "-h"}, "" +
			"debug*       up      30:00      2    mix gpu[01-02]\n" +
			"gpu          up 2-00:00:00      2    mix gpu[01-02]\n" +
			"debug*       up      30:00      1  alloc cpu1\n" +
			"debug*       up      30:00      1   idle gpu03\n" +
			"debug*       up      30:00      1  drain gpu04\n" +
			"debug*       up      30:00      1   down gpu10\n" +
			"gpu          up 2-00:00:00      1   idle gpu03\n" +
			"gpu          up 2-00:00:00      1  drain gpu04\n" +
			"gpu          up 2-00:00:00      1   down gpu10\n" +
			"old       drain   infinite      1  alloc cpu1\n" +
			"off       inact   infinite      0    n/a\n"},
		{[]string{"-s", "-S", "-P", "-h"}, "" +
			"old       drain   infinite         1/0/0/1 cpu1\n" +
			"off       inact   infinite         0/0/0/0\n" +
			"gpu          up 2-00:00:00         2/1/2/5 gpu[01-04,10]\n" +
			"debug*       up      30:00         3/1/2/6 cpu1,gpu[01-04,10]\n"},
		{[]string{"-o", "%P %t %D", "-S", "t,#P", "-h"}, "" +
			"debug* alloc 1\n" +
			"old alloc 1\n" +
			"debug* down 1\n" +
			"gpu down 1\n" +
			"debug* drain 1\n" +
			"gpu drain 1\n" +
			"debug* idle 1\n" +
			"gpu idle 1\n" +
			"debug* mix 2\n" +
			"gpu mix 2\n"},
	}
	for _, tt := range tests {
		f := &fakeServer{nodes: testNodes(), config: testPartitions()}
		te := newTestEnv("sinfo", f.start(t))
		if code := te.run(t, tt.args...); code != 0 {
			t.Fatalf("sinfo %q exited %d: %s", tt.args, code, te.err)
		}
		if got := te.out.String(); got != tt.want {
			t.Errorf("sinfo %q printed\n%s\nwant\n%s", tt.args, got, tt.want)
		}
	}
	te := newTestEnv("sinfo", deadAddr(t))
	if code := te.run(t, "-S", "Z"); code == 0 || !strings.Contains(te.err.String(), `field "Z" is not a sinfo format letter`) {
		t.Errorf("sinfo -S Z: exit %d, stderr %q; want refused naming the field", code, te.err.String())
	}
}
