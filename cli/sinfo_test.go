package cli

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/loomhpc/loom/api"
)

// h100s is a topology of n H100 GPUs.
func h100s(n int) *api.Topology {
	t := &api.Topology{Profile: "dgx-h100"}
	for i := 0; i < n; i++ {
		t.Gpus = append(t.Gpus, &api.GPU{Index: uint32(i), Uuid: fmt.Sprintf("GPU-%d", i), Model: "NVIDIA H100 80GB HBM3", MemoryMib: 81559, Healthy: true})
	}
	return t
}

// testNodes: gpu01-04 in gpu (gpu01 also in batch), login-ish cpu1 in the
// default partition, one drained and one down.
func testNodes() []*api.NodeInfo {
	node := func(name string, parts []string, st api.NodeState, gpus int) *api.Node {
		var topo *api.Topology
		if gpus > 0 {
			topo = h100s(gpus)
		}
		return &api.Node{Name: name, Address: name + ":7073", Cpus: 64, MemoryMb: 512000, Partitions: parts, State: st, Topology: topo,
			RegisteredUnixMs: ms(48 * time.Hour), UpdatedUnixMs: ms(time.Hour)}
	}
	drained := node("gpu04", []string{"gpu"}, api.NodeState_DRAIN, 8)
	drained.Reason = "bad NVLink"
	down := node("gpu10", []string{"gpu"}, api.NodeState_DOWN, 8)
	return []*api.NodeInfo{
		{Node: node("gpu02", []string{"gpu"}, api.NodeState_IDLE, 8), State: api.NodeState_MIXED, GpusAllocated: 2, CpusAllocated: 8, JobIds: []uint64{12}},
		{Node: node("gpu01", []string{"gpu", "batch"}, api.NodeState_IDLE, 8), State: api.NodeState_MIXED, GpusAllocated: 2, CpusAllocated: 8, JobIds: []uint64{12}},
		{Node: node("gpu03", []string{"gpu"}, api.NodeState_IDLE, 8), State: api.NodeState_IDLE},
		{Node: drained, State: api.NodeState_DRAIN},
		{Node: down, State: api.NodeState_DOWN},
		{Node: node("cpu1", nil, api.NodeState_IDLE, 0), State: api.NodeState_ALLOCATED, CpusAllocated: 64, JobIds: []uint64{14}},
	}
}

func TestSinfo(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{
			name: "default",
			want: "" +
				"PARTITION AVAIL  TIMELIMIT  NODES  STATE NODELIST\n" +
				"batch*       up        n/a      1    mix gpu01\n" +
				"batch*       up        n/a      1  alloc cpu1\n" +
				"gpu          up        n/a      2    mix gpu[01-02]\n" +
				"gpu          up        n/a      1   idle gpu03\n" +
				"gpu          up        n/a      1  drain gpu04\n" +
				"gpu          up        n/a      1   down gpu10\n",
		},
		{
			name: "long shows GRES",
			args: []string{"-l", "-p", "gpu"},
			want: "" +
				"PARTITION AVAIL  TIMELIMIT  NODES       STATE GRES       NODELIST\n" +
				"gpu          up        n/a      2       mixed gpu:h100:8 gpu[01-02]\n" +
				"gpu          up        n/a      1        idle gpu:h100:8 gpu03\n" +
				"gpu          up        n/a      1     drained gpu:h100:8 gpu04\n" +
				"gpu          up        n/a      1        down gpu:h100:8 gpu10\n",
		},
		{
			name: "node oriented",
			args: []string{"-N"},
			want: "" +
				"NODELIST  NODES PARTITION STATE\n" +
				"cpu1          1    batch* alloc\n" +
				"gpu01         1       gpu mix\n" +
				"gpu01         1    batch* mix\n" +
				"gpu02         1       gpu mix\n" +
				"gpu03         1       gpu idle\n" +
				"gpu04         1       gpu drain\n" +
				"gpu10         1       gpu down\n",
		},
		{
			name: "node oriented long",
			args: []string{"-N", "-l", "-n", "gpu[01,04]"},
			want: "" +
				"NODELIST  NODES PARTITION       STATE  CPUS(A/T)   MEMORY GRES       GRES_USED  REASON\n" +
				"gpu01         1       gpu       mixed       8/64   512000 gpu:h100:8 gpu:h100:2 none\n" +
				"gpu01         1    batch*       mixed       8/64   512000 gpu:h100:8 gpu:h100:2 none\n" +
				"gpu04         1       gpu     drained       0/64   512000 gpu:h100:8 gpu:h100:0 bad NVLink\n",
		},
		{
			name: "reasons",
			args: []string{"-R"},
			want: "" +
				"REASON               USER      TIMESTAMP           NODELIST\n" +
				"bad NVLink           n/a       2024-05-01T11:00:00 gpu04\n" +
				"Not responding       n/a       2024-05-01T11:00:00 gpu10\n",
		},
		{
			name: "states filter",
			args: []string{"-t", "idle,drain", "-h"},
			want: "" +
				"gpu          up        n/a      1   idle gpu03\n" +
				"gpu          up        n/a      1  drain gpu04\n",
		},
		{
			name: "summarize",
			args: []string{"-s"},
			want: "" +
				"PARTITION AVAIL  TIMELIMIT  NODES(A/I/O/T) NODELIST\n" +
				"batch*       up        n/a         2/0/0/2 cpu1,gpu01\n" +
				"gpu          up        n/a         2/1/2/5 gpu[01-04,10]\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeServer{nodes: testNodes()}
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

func TestSinfoJSON(t *testing.T) {
	f := &fakeServer{nodes: testNodes()}
	te := newTestEnv("sinfo", f.start(t))
	if code := te.run(t, "--json", "-t", "mix"); code != 0 {
		t.Fatalf("sinfo --json exited %d: %s", code, te.err)
	}
	var resp api.ListNodesResponse
	if err := protojson.Unmarshal(te.out.Bytes(), &resp); err != nil {
		t.Fatalf("sinfo --json printed invalid JSON: %v\n%s", err, te.out)
	}
	var names []string
	for _, n := range resp.GetNodes() {
		names = append(names, n.GetNode().GetName())
	}
	if want := []string{"gpu01", "gpu02"}; !slices.Equal(names, want) {
		t.Errorf("sinfo --json -t mix listed %v, want %v", names, want)
	}
}

func TestGresType(t *testing.T) {
	tests := []struct{ model, want string }{
		{"NVIDIA H100 80GB HBM3", "h100"},
		{"NVIDIA A100-SXM4-80GB", "a100"},
		{"Tesla V100-SXM2-32GB", "v100"},
		{"NVIDIA L40S", "l40s"},
		{"", ""},
	}
	for _, tt := range tests {
		if got := gresType(tt.model); got != tt.want {
			t.Errorf("gresType(%q) = %q, want %q", tt.model, got, tt.want)
		}
	}
}

// TestSinfoFormat: -o groups the nodes that show the same values, per
// partition when the format shows one; %f lists declared features, then
// the GPU model's short name.
func TestSinfoFormat(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"-o", "%N %f"}, "" +
			"NODELIST AVAIL_FEATURES\n" +
			"cpu1 (null)\n" +
			"gpu[01-02,04,10] h100\n" +
			"gpu03 ib,h100\n"},
		{[]string{"-p", "gpu", "-o", "%10P %.5D %20f %t"}, "" +
			"PARTITION  NODES AVAIL_FEATURES       STATE\n" +
			"gpu            2 h100                 mix\n" +
			"gpu            1 ib,h100              idle\n" +
			"gpu            1 h100                 drain\n" +
			"gpu            1 h100                 down\n"},
		{[]string{"-N", "-h", "-n", "gpu0[2-3]", "-o", "%N|%b|%c"}, "" +
			"gpu02|h100|64\n" +
			"gpu03|ib,h100|64\n"},
	}
	for _, tt := range tests {
		f := &fakeServer{nodes: testNodes()}
		f.nodes[2].Node.Features = []string{"ib"}
		te := newTestEnv("sinfo", f.start(t))
		if code := te.run(t, tt.args...); code != 0 {
			t.Fatalf("sinfo %q exited %d: %s", tt.args, code, te.err)
		}
		if got := te.out.String(); got != tt.want {
			t.Errorf("sinfo %q printed\n%s\nwant\n%s", tt.args, got, tt.want)
		}
	}
	f := &fakeServer{nodes: testNodes()}
	te := newTestEnv("sinfo", f.start(t))
	if code := te.run(t, "-o", "%N %z"); code == 0 || !strings.Contains(te.err.String(), "field %z is not supported") {
		t.Errorf("sinfo -o '%%N %%z' exited %d, stderr %q; want an error naming %%z", code, te.err)
	}
}
