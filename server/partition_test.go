package server

import (
	"strings"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/loomhpc/loom/api"
	"github.com/loomhpc/loom/api/apirpc"
	"github.com/loomhpc/loom/auth"
	"github.com/loomhpc/loom/state"
)

// TestSubmitPartitionGroups: AllowGroups admits the members of a group
// (by the directory, for the uid the connection proves) and operators, and
// refuses others naming the groups; partition limits refuse at submit
// before anything is proposed.
func TestSubmitPartitionGroups(t *testing.T) {
	e := newAuthzEnvWith(t, func(c *Config) {
		c.Policy.Directory = auth.MemoryDirectory{Users: []auth.User{
			{Name: "alice", UID: alice, GID: alice, Groups: []uint32{alice, 2000}},
			{Name: "bob", UID: bob, GID: bob}, {Name: "op", UID: op, GID: op},
		}, Groups: map[string]uint32{"chem": 2000}}
	})
	cfg := &api.ClusterConfig{Partitions: []*api.PartitionConfig{
		{Name: "chem", AllowGroups: []string{"chem"}},
		{Name: "debug", Default: true, MaxTimeS: 1800},
	}}
	if _, err := e.s.apply(ctx(t), state.CmdSetConfig, &api.SetConfigCommand{Config: cfg, NowUnixMs: 1}); err != nil {
		t.Fatal(err)
	}
	spec := func(part string, limit int64) *api.JobSpec {
		return &api.JobSpec{Script: "#!/bin/sh\n", Partition: part, TimeLimitS: limit, Hold: true}
	}
	e.submit(alice, &api.SubmitRequest{Spec: spec("chem", 0)})
	e.submit(op, &api.SubmitRequest{Spec: spec("chem", 0)})
	id := e.submit(bob, &api.SubmitRequest{Spec: spec("", 0)})
	if got := e.s.State().Job(id).Spec; got.Partition != "debug" || got.TimeLimitS != 1800 {
		t.Errorf("job with no partition: partition %q limit %d, want debug 1800", got.Partition, got.TimeLimitS)
	}
	jobs := apirpc.NewJobServiceClient(e.user(bob))
	for _, tt := range []struct {
		spec *api.JobSpec
		want string
	}{
		{spec("chem", 0), "--partition=chem: none of your groups may use it (AllowGroups=chem)"},
		{spec("gpu", 0), "--partition=gpu: no such partition; defined are chem, debug"},
		{spec("debug", 3600), "--time=1:00:00: over partition debug's MaxTime=30:00"},
	} {
		_, err := jobs.Submit(ctx(t), &api.SubmitRequest{Spec: tt.spec})
		wantCode(t, tt.want, err, codes.InvalidArgument)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("bob submitting to %q: %v, want %q", tt.spec.Partition, err, tt.want)
		}
	}
}
