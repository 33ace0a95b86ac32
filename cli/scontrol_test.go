package cli

import (
	"strings"
	"testing"

	"github.com/loomhpc/loom/api"
)

func TestScontrolShowJob(t *testing.T) {
	f := &fakeServer{jobs: testJobs()}
	te := newTestEnv("scontrol", f.start(t))
	f.jobs[1].Spec.GpusPerNode, f.jobs[1].Spec.GpuType = 2, "h100"
	f.jobs[1].Spec.WorkingDir = "/home/alice/work"
	f.jobs[1].Spec.Output = "slurm-%j.out"
	f.jobs[1].SubmitHost = "login1"
	f.jobs[1].Spec.TimeMinS, f.jobs[1].Spec.Constraint, f.jobs[1].Spec.Comment = 1800, "ib&[rack1|rack2]", "nightly run"
	f.jobs[1].Spec.MailType, f.jobs[1].Spec.MailUser = "END,FAIL", "alice@example.org"
	if code := te.run(t, "show", "job", "12"); code != 0 {
		t.Fatalf("scontrol show job 12 exited %d: %s", code, te.err)
	}
	want := `JobId=12 JobName=train-resnet
   UserId=alice(1000) GroupId=0
   Priority=10 Nice=0 Account=vision QOS=(null)
   JobState=RUNNING Reason=None Dependency=(null)
   Requeue=1 Restarts=0 MaxRestarts=3 BatchFlag=1 ExitCode=0:0
   RunTime=01:05:05 TimeLimit=02:00:00 TimeMin=00:30:00
   SubmitTime=2024-05-01T10:00:00 EligibleTime=2024-05-01T10:00:00
   StartTime=2024-05-01T10:54:55 EndTime=Unknown
   Partition=gpu AllocNode:Sid=login1:0
   NodeList=node[1-2] BatchHost=node2
   NumNodes=2 NumCPUs=16 NumTasks=4 CPUs/Task=1
   TRES=cpu=16,gres/gpu=4,mem=4000M,node=2
   MinMemoryNode=0 Exclusive=false
   Features=ib&[rack1|rack2]
   TresPerJob=(null) TresPerNode=gres/gpu:h100:2 TresPerTask=(null)
   Comment=nightly run
   MailUser=alice@example.org MailType=END,FAIL
   Command=(batch script)
   WorkDir=/home/alice/work
   StdErr=slurm-%j.out
   StdOut=slurm-%j.out

`
	if got := te.out.String(); got != want {
		t.Errorf("scontrol show job 12 printed\n%s\nwant\n%s", got, want)
	}
}

// TestScontrolShowJobDetails: -d adds each node's cores (CPU_IDs), memory
// and GPUs after the TRES line, as Slurm prints them.
func TestScontrolShowJobDetails(t *testing.T) {
	f := &fakeServer{jobs: testJobs()}
	te := newTestEnv("scontrol", f.start(t))
	a := f.jobs[1].Allocation
	for i, r := range a.Ranks {
		r.Cores = []uint32{uint32(4 * (i % 2)), uint32(4*(i%2) + 1), uint32(4*(i%2) + 2), uint32(4*(i%2) + 3)}
	}
	if code := te.run(t, "-d", "show", "job", "12"); code != 0 {
		t.Fatalf("scontrol -d show job 12 exited %d: %s", code, te.err)
	}
	want := "   TRES=cpu=16,gres/gpu=4,mem=4000M,node=2\n" +
		"   Nodes=node2 CPU_IDs=0-7 Mem=2000 GRES=gpu:2(IDX:0-1)\n" +
		"   Nodes=node1 CPU_IDs=0-7 Mem=2000 GRES=gpu:2(IDX:0-1)\n" +
		"   MinMemoryNode=0"
	if got := te.out.String(); !strings.Contains(got, want) {
		t.Errorf("scontrol -d show job 12 printed\n%s\nwant it to hold\n%s", got, want)
	}
}

func TestScontrolShowJobOneLinerAndAll(t *testing.T) {
	f := &fakeServer{jobs: testJobs()}
	te := newTestEnv("scontrol", f.start(t))
	if code := te.run(t, "-o", "show", "jobs"); code != 0 {
		t.Fatalf("scontrol -o show jobs exited %d: %s", code, te.err)
	}
	lines := strings.Split(strings.TrimSuffix(te.out.String(), "\n"), "\n")
	if len(lines) != len(f.jobs) {
		t.Fatalf("scontrol -o show jobs printed %d lines, want %d:\n%s", len(lines), len(f.jobs), te.out)
	}
	if !strings.HasPrefix(lines[0], "JobId=11 JobName=prep UserId=alice(1000)") {
		t.Errorf("scontrol -o show jobs line 1 = %q, want it to start with JobId=11 JobName=prep UserId=alice(1000)", lines[0])
	}
}

func TestScontrolShowNode(t *testing.T) {
	f := &fakeServer{nodes: testNodes()}
	f.nodes[3].Node.Topology.Gpus = f.nodes[3].Node.Topology.Gpus[:2]
	f.nodes[3].Node.Topology.Gpus[1].Healthy = false
	f.nodes[3].Node.Topology.Gpus[1].HealthReason = "XID 79"
	f.nodes[3].Node.Features = []string{"ib", "rack2"}
	te := newTestEnv("scontrol", f.start(t))
	if code := te.run(t, "show", "node", "gpu04"); code != 0 {
		t.Fatalf("scontrol show node exited %d: %s", code, te.err)
	}
	want := `NodeName=gpu04
   CPUAlloc=0 CPUTot=64
   AvailableFeatures=ib,rack2,h100
   ActiveFeatures=ib,rack2,h100
   Gres=gpu:h100:2
   GresUsed=gpu:h100:0
   NodeAddr=gpu04:7073 Version=(null)
   RealMemory=512000 AllocMem=0
   State=IDLE+DRAIN
   Partitions=gpu
   RegisterTime=2024-04-29T12:00:00 LastChangeTime=2024-05-01T11:00:00
   LeafSwitch=(null) SpineSwitch=(null)
   Jobs=(null)
   Reason=bad NVLink
   GPU0="NVIDIA H100 80GB HBM3" Memory=81559MiB NUMA=0 Health=OK
   GPU1="NVIDIA H100 80GB HBM3" Memory=81559MiB NUMA=0 Health=XID 79

`
	if got := te.out.String(); got != want {
		t.Errorf("scontrol show node gpu04 printed\n%s\nwant\n%s", got, want)
	}
}

func TestScontrolErrors(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"show", "job", "99"}, "scontrol: error: job 99: invalid job id specified\n"},
		{[]string{"show", "node", "nope"}, "scontrol: error: node nope not found\n"},
		{[]string{"show", "licenses"}, "scontrol: error: show: cannot show \"licenses\": Loom shows job, node, step, partition, reservation, config and hostnames\nTry \"scontrol --help\" for more information\n"},
		{[]string{"update", "nodename=gpu01", "state=drain"}, "scontrol: error: you must specify a reason when draining a node: reason=\"...\"\n"},
		{[]string{"update", "nodename=gpu01", "state=down", "reason=x"}, "scontrol: error: state=down: Loom supports state=drain and state=resume\n"},
		{[]string{"update", "nodename=gpu01", "reason=maint", "window"}, "scontrol: error: update: invalid input \"window\": want KEY=VALUE (quote values with blanks)\nTry \"scontrol --help\" for more information\n"},
		{[]string{"update", "nodename=gpu[03,99]", "state=drain", "reason=x"}, "scontrol: error: node gpu99: invalid node name specified: no such node\n"},
		{[]string{"suspend", "12"}, "scontrol: error: suspend is not supported by Loom yet\n"},
		{[]string{"requeue"}, "scontrol: error: requeue: name the jobs: scontrol requeue JOBID[,JOBID...]\nTry \"scontrol --help\" for more information\n"},
		{nil, "scontrol: error: no command given\nTry \"scontrol --help\" for more information\n"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			f := &fakeServer{jobs: testJobs(), nodes: testNodes()}
			te := newTestEnv("scontrol", f.start(t))
			if code := te.run(t, tt.args...); code != 1 {
				t.Errorf("scontrol %q exited %d, want 1", tt.args, code)
			}
			if got := te.err.String(); got != tt.want {
				t.Errorf("scontrol %q stderr = %q, want %q", tt.args, got, tt.want)
			}
		})
	}
}

func TestScontrolUpdate(t *testing.T) {
	f := &fakeServer{nodes: testNodes()}
	te := newTestEnv("scontrol", f.start(t))
	if code := te.run(t, "update", "NodeName=gpu[01-02]", "State=DRAIN", `Reason="swap PSU"`); code != 0 {
		t.Fatalf("scontrol update drain exited %d: %s", code, te.err)
	}
	if code := te.run(t, "update", "nodename=gpu04", "state=resume"); code != 0 {
		t.Fatalf("scontrol update resume exited %d: %s", code, te.err)
	}
	want := []*api.NodeStateRequest{{Name: "gpu01", Reason: "swap PSU"}, {Name: "gpu02", Reason: "swap PSU"}}
	if len(f.drains) != 2 || f.drains[0].GetName() != want[0].Name || f.drains[1].GetName() != want[1].Name ||
		f.drains[0].GetReason() != "swap PSU" || f.drains[1].GetReason() != "swap PSU" {
		t.Errorf("scontrol update drain sent %v, want %v", f.drains, want)
	}
	if len(f.resumes) != 1 || f.resumes[0].GetName() != "gpu04" {
		t.Errorf("scontrol update resume sent %v, want one for gpu04", f.resumes)
	}
	if te.out.Len() != 0 || te.err.Len() != 0 {
		t.Errorf("scontrol update printed %q / %q, want nothing", te.out, te.err)
	}
}
