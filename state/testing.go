package state

import (
	"fmt"

	"github.com/loomhpc/loom/api"
	"google.golang.org/protobuf/proto"
)

// TestFSM is an FSM over a fresh store that applies commands without a
// Raft log, numbering entries itself. For tests of this and other packages.
type TestFSM struct {
	*FSM
	Store *Store
	index uint64
}

// NewTestFSM returns an empty TestFSM.
func NewTestFSM() *TestFSM {
	st := NewStore()
	return &TestFSM{FSM: NewFSM(st, nil), Store: st}
}

// Apply encodes and applies one command as the next entry.
func (f *TestFSM) Apply(c CommandType, msg proto.Message) *Result {
	data, err := Encode(c, msg)
	if err != nil {
		panic(err)
	}
	f.index++
	return f.ApplyEntry(f.index, data)
}

// TestNode returns a node with n simulated healthy GPUs, all NV18-linked.
func TestNode(name string, gpus int, cpus uint32) *api.Node {
	t := &api.Topology{}
	for i := range gpus {
		t.Gpus = append(t.Gpus, &api.GPU{Index: uint32(i), Uuid: fmt.Sprintf("GPU-%s-%d", name, i), Healthy: true, Simulated: true})
	}
	for i := range gpus {
		for k := range gpus {
			l := &api.Link{Type: api.LinkType_LINK_NV, Nvlinks: 18}
			if i == k {
				l = &api.Link{Type: api.LinkType_LINK_SELF}
			}
			t.Links = append(t.Links, l)
		}
	}
	return &api.Node{Name: name, Address: "127.0.0.1:7073", Cpus: cpus, MemoryMb: 1 << 20, Topology: t}
}
