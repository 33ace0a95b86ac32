package raftnode

import (
	"context"
	"testing"
	"time"

	"github.com/loomhpc/loom/api"
	"github.com/loomhpc/loom/pki"
	"github.com/loomhpc/loom/state"
)

// TestTLSTransportReplicatesBetweenServers: two servers holding server
// certificates of one CA form a cluster over mutual TLS and replicate.
func TestTLSTransportReplicatesBetweenServers(t *testing.T) {
	ca := pki.NewTestPKI(t)
	open := func(id string, role pki.Role, bootstrap bool) *Node {
		files := ca.Files(role, id)
		n, err := Open(Config{NodeID: id, DataDir: t.TempDir(), BindAddr: "127.0.0.1:0", Bootstrap: bootstrap, Fast: true, TLS: &files})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { n.Close() })
		return n
	}
	s1 := open("s1", pki.RoleServer, true)
	waitLeader(t, s1)
	s2 := open("s2", pki.RoleServer, false)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := s1.AddVoter(ctx, "s2", s2.Addr()); err != nil {
		t.Fatalf("AddVoter(s2) = %v", err)
	}
	// hashicorp/raft commits AddVoter's entry under the old configuration,
	// before s2 has heard anything; with Fast's 50 ms lease a slow first
	// TLS handshake can make s1 step down. Leadership then settles on one
	// of the two, and the submit (idempotent by its token) is retried there.
	cmd := &api.SubmitJobCommand{Request: &api.SubmitRequest{Spec: &api.JobSpec{Script: "x"}, IdempotencyToken: "tls"}}
	var lastErr error
	for applied := false; !applied; {
		for _, n := range []*Node{s1, s2} {
			if !applied && n.IsLeader() {
				_, lastErr = n.Apply(ctx, state.CmdSubmitJob, cmd)
				applied = lastErr == nil
			}
		}
		if !applied {
			if ctx.Err() != nil {
				t.Fatalf("Apply over a TLS quorum of 2: %v (last error %v)", ctx.Err(), lastErr)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	for s2.Store().View().JobByToken("tls") == nil || s1.Store().View().JobByToken("tls") == nil {
		if ctx.Err() != nil {
			t.Fatal("s2 never received the job over the TLS transport")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestTLSTransportRefusesAgentCertificate: a node that holds only an agent
// certificate cannot become part of a server's quorum. Adding it to a
// one-server cluster needs its vote to commit the change, and the TLS
// transport refuses it both ways, so the change never commits and the
// node never receives the log.
func TestTLSTransportRefusesAgentCertificate(t *testing.T) {
	ca := pki.NewTestPKI(t)
	sf, af := ca.Files(pki.RoleServer, "s1"), ca.Files(pki.RoleAgent, "rogue")
	s1, err := Open(Config{NodeID: "s1", DataDir: t.TempDir(), BindAddr: "127.0.0.1:0", Bootstrap: true, Fast: true, TLS: &sf})
	if err != nil {
		t.Fatal(err)
	}
	defer s1.Close()
	rogue, err := Open(Config{NodeID: "rogue", DataDir: t.TempDir(), BindAddr: "127.0.0.1:0", Fast: true, TLS: &af})
	if err != nil {
		t.Fatal(err)
	}
	defer rogue.Close()
	waitLeader(t, s1)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := s1.Apply(ctx, state.CmdSubmitJob, &api.SubmitJobCommand{Request: &api.SubmitRequest{
		Spec: &api.JobSpec{Script: "x"}, IdempotencyToken: "before"}}); err != nil {
		t.Fatal(err)
	}
	// hashicorp/raft commits a membership change under the old
	// configuration, so adding the rogue succeeds; from then on every
	// entry needs the rogue's acknowledgement, which the TLS transport
	// never lets through.
	if err := s1.AddVoter(ctx, "rogue", rogue.Addr()); err != nil {
		t.Fatalf("AddVoter(rogue) = %v", err)
	}
	applyCtx, applyCancel := context.WithTimeout(ctx, 2*time.Second)
	defer applyCancel()
	if _, err := s1.Apply(applyCtx, state.CmdSubmitJob, &api.SubmitJobCommand{Request: &api.SubmitRequest{
		Spec: &api.JobSpec{Script: "x"}, IdempotencyToken: "after"}}); err == nil {
		t.Fatal("an entry committed with a quorum that counts a node holding an agent certificate")
	}
	if rogue.Store().View().JobByToken("before") != nil {
		t.Fatal("a node with an agent certificate received the replicated log")
	}
}
