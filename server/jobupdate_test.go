package server

import (
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/loomhpc/loom/api"
	"github.com/loomhpc/loom/api/apirpc"
)

// TestUpdateJobAccess checks scontrol update job end to end through the
// RPC: who may change what, and that a change is checked as a submit is.
func TestUpdateJobAccess(t *testing.T) {
	e := newAuthzEnv(t)
	id := e.submit(alice, &api.SubmitRequest{Spec: &api.JobSpec{Script: "#!/bin/sh\n", TimeLimitS: 3600, Hold: true}})
	update := func(uid uint32, req *api.UpdateJobRequest) error {
		req.JobId = id
		_, err := apirpc.NewJobServiceClient(e.user(uid)).UpdateJob(ctx(t), req)
		return err
	}
	wantCode(t, "bob renames alice's job", update(bob, &api.UpdateJobRequest{Name: proto.String("b")}), codes.PermissionDenied)
	wantCode(t, "alice raises her time limit", update(alice, &api.UpdateJobRequest{TimeLimitS: proto.Int64(7200)}), codes.PermissionDenied)
	wantCode(t, "alice asks for a QoS qos_access keeps from her", update(alice, &api.UpdateJobRequest{Qos: proto.String("high")}), codes.PermissionDenied)
	wantCode(t, "alice asks for more nodes than the cluster has", update(alice, &api.UpdateJobRequest{NodesMin: proto.Uint32(5)}), codes.InvalidArgument)
	wantCode(t, "alice changes nothing", update(alice, &api.UpdateJobRequest{}), codes.InvalidArgument)
	if err := update(alice, &api.UpdateJobRequest{TimeLimitS: proto.Int64(600), Comment: proto.String("shorter")}); err != nil {
		t.Errorf("alice lowers her time limit: %v", err)
	}
	if err := update(op, &api.UpdateJobRequest{TimeLimitS: proto.Int64(7200)}); err != nil {
		t.Errorf("the operator raises alice's time limit: %v", err)
	}
	if s := e.s.State().Job(id).Spec; s.TimeLimitS != 7200 || s.Comment != "shorter" {
		t.Errorf("after the updates time limit %d comment %q, want 7200 and \"shorter\"", s.TimeLimitS, s.Comment)
	}
}

// TestTestSubmit checks that --test-only answers from the scheduler's
// plan and submits nothing: on an idle node a job would start now there.
func TestTestSubmit(t *testing.T) {
	e := newAuthzEnv(t)
	before := e.s.State().NextJobID()
	start := time.Now()
	resp, err := apirpc.NewJobServiceClient(e.user(alice)).TestSubmit(ctx(t), &api.SubmitRequest{Spec: &api.JobSpec{Script: "#!/bin/sh\n", CpusPerTask: 4}})
	if err != nil {
		t.Fatal(err)
	}
	if got := time.UnixMilli(resp.StartUnixMs); got.Before(start.Truncate(time.Millisecond)) || got.After(time.Now()) || len(resp.Nodes) != 1 || resp.Nodes[0] != "node1" || resp.Cpus != 4 {
		t.Errorf("TestSubmit on an idle node1 = %v, want a start now on node1 with 4 CPUs", resp)
	}
	if after := e.s.State().NextJobID(); after != before {
		t.Errorf("TestSubmit moved the next job id from %d to %d: it submitted something", before, after)
	}
	_, err = apirpc.NewJobServiceClient(e.user(alice)).TestSubmit(ctx(t), &api.SubmitRequest{Spec: &api.JobSpec{Script: "#!/bin/sh\n", NodesMin: 3}})
	wantCode(t, "a job that can never run", err, codes.InvalidArgument)
}
