package state

import (
	"bytes"
	"testing"

	"github.com/loomhpc/loom/api"
	"google.golang.org/protobuf/proto"
)

// TestSetConfigReplicatedAndSnapshotted: the configuration a SetConfig
// entry carries is what the view returns, it changes the state hash, and
// a snapshot restores it.
func TestSetConfigReplicatedAndSnapshotted(t *testing.T) {
	f := NewTestFSM()
	if f.Store.View().Config() != nil {
		t.Fatal("a fresh state has a configuration")
	}
	before, err := f.Store.View().Hash()
	if err != nil {
		t.Fatal(err)
	}
	cfg := &api.ClusterConfig{
		Scheduler:  &api.SchedulerSettings{Policy: "fifo", DefaultTimeS: 3600},
		Partitions: []*api.PartitionConfig{{Name: "debug", MaxTimeS: 1800, Default: true}},
		Qos:        []*api.QOSConfig{{Name: "high", Priority: 100, Preempt: []string{"normal"}}},
		Sha256:     "abc",
	}
	f.Apply(CmdSetConfig, &api.SetConfigCommand{Config: cfg, NowUnixMs: 1})
	got := f.Store.View().Config()
	if !proto.Equal(got, cfg) {
		t.Fatalf("Config() = %v, want %v", got, cfg)
	}
	after, _ := f.Store.View().Hash()
	if after == before {
		t.Fatal("setting the configuration left the state hash unchanged")
	}
	snap, err := f.Store.View().Marshal()
	if err != nil {
		t.Fatal(err)
	}
	g := NewTestFSM()
	if err := g.Restore(bytes.NewReader(snap)); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(g.Store.View().Config(), cfg) {
		t.Fatalf("restored Config() = %v, want %v", g.Store.View().Config(), cfg)
	}
	if h, _ := g.Store.View().Hash(); h != after {
		t.Fatalf("restored hash %s, want %s", h, after)
	}
}
