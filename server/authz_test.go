package server

import (
	"context"
	"crypto/tls"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/loomhpc/loom/api"
	"github.com/loomhpc/loom/api/apirpc"
	"github.com/loomhpc/loom/auth"
	"github.com/loomhpc/loom/auth/munge"
	"github.com/loomhpc/loom/internal/harness"
	"github.com/loomhpc/loom/pki"
)

// Every method the server serves has exactly one access rule, and every
// rule names a method the server serves: a new method cannot be reached
// until someone decides who may call it.
func TestEveryMethodHasAnAccessRule(t *testing.T) {
	g := grpc.NewServer()
	(&Server{}).registerServices(g)
	served := map[string]bool{}
	for svc, info := range g.GetServiceInfo() {
		for _, m := range info.Methods {
			name := "/" + svc + "/" + m.Name
			served[name] = true
			if _, ok := methodAccess[name]; !ok {
				t.Errorf("%s has no rule in methodAccess", name)
			}
		}
	}
	for name := range methodAccess {
		if !served[name] {
			t.Errorf("methodAccess has a rule for %s, which the server does not serve", name)
		}
	}
}

// fakeMunge stands in for munged: a credential is "uid:gid:payload", and
// each is accepted once, as munged refuses replays.
type fakeMunge struct{ seen map[string]bool }

func (f *fakeMunge) Decode(cred string) (munge.Credential, error) {
	if f.seen[cred] {
		return munge.Credential{}, &munge.Error{Code: 15, Message: "replayed"}
	}
	f.seen[cred] = true
	parts := strings.SplitN(cred, ":", 4)
	if len(parts) != 4 {
		return munge.Credential{}, &munge.Error{Code: 8, Message: "invalid"}
	}
	uid, _ := strconv.ParseUint(parts[0], 10, 32)
	gid, _ := strconv.ParseUint(parts[1], 10, 32)
	return munge.Credential{UID: uint32(uid), GID: uint32(gid), Payload: []byte(parts[3])}, nil
}

// userCreds makes fakeMunge credentials of one user; a counter keeps
// each unique.
type userCreds struct {
	uid, gid uint32
	n        *int
}

func (u userCreds) Encode(payload []byte) (string, error) {
	*u.n++
	return fmt.Sprintf("%d:%d:%d:%s", u.uid, u.gid, *u.n, payload), nil
}

// authzEnv is a one-server cluster with TLS and MUNGE-style users:
// alice (1001), bob (1002) and the operator op (1003).
type authzEnv struct {
	t    *testing.T
	s    *Server
	pki  *pki.TestPKI
	seq  int
	addr string
}

const (
	alice, bob, op uint32 = 1001, 1002, 1003
)

func newAuthzEnv(t *testing.T) *authzEnv { return newAuthzEnvWith(t, nil) }

// newAuthzEnvWith is newAuthzEnv with a server whose config edit changes.
func newAuthzEnvWith(t *testing.T, edit func(*Config)) *authzEnv {
	t.Helper()
	p := pki.NewTestPKI(t)
	files := p.Files(pki.RoleServer, "s1")
	dir := auth.MemoryDirectory{Users: []auth.User{
		{Name: "alice", UID: alice, GID: alice}, {Name: "bob", UID: bob, GID: bob}, {Name: "op", UID: op, GID: op},
	}}
	cfg := Config{
		Name: "s1", DataDir: filepath.Join(t.TempDir(), "s1"), RPCAddr: "127.0.0.1:0", RaftAddr: "127.0.0.1:0", MetricsAddr: "-",
		Bootstrap: true, Fast: true, RaftLogLevel: "error",
		Auth: auth.ModeMunge, Munge: &fakeMunge{seen: map[string]bool{}}, TLS: &files,
		Policy:    auth.Policy{OperatorUsers: []string{"op"}, Directory: dir},
		QOSAccess: map[string]auth.Policy{"high": {OperatorUsers: []string{"bob"}, Directory: dir}},
	}
	if edit != nil {
		edit(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	harness.WaitFor(t, "the server to lead", 10*time.Second, s.IsLeader)
	e := &authzEnv{t: t, s: s, pki: p, addr: s.RPCAddr()}
	// node1 registers with its own agent certificate.
	if _, err := apirpc.NewAgentServiceClient(e.daemon(pki.RoleAgent, "node1")).Register(ctx(t), &api.RegisterRequest{Node: testNode("node1")}); err != nil {
		t.Fatalf("node1 registering with its certificate: %v", err)
	}
	return e
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return c
}

func testNode(name string) *api.Node {
	return &api.Node{Name: name, Address: "127.0.0.1:1", Cpus: 16, MemoryMb: 64 << 10,
		Topology: &api.Topology{Gpus: []*api.GPU{{Index: 0, Uuid: "GPU-" + name, Healthy: true}}}}
}

// conn dials the server with TLS creds and, for a user, MUNGE-style
// credentials.
func (e *authzEnv) conn(tc *tls.Config, opts ...grpc.DialOption) *grpc.ClientConn {
	e.t.Helper()
	cc, err := grpc.NewClient(e.addr, append([]grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(tc))}, opts...)...)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { cc.Close() })
	return cc
}

// user returns a connection as uid (no client certificate).
func (e *authzEnv) user(uid uint32) *grpc.ClientConn {
	e.t.Helper()
	tc, err := pki.CLIClientConfig(pki.Files{CA: e.pki.CA.CertFile})
	if err != nil {
		e.t.Fatal(err)
	}
	return e.conn(tc, grpc.WithPerRPCCredentials(auth.MungeCredentials{Munge: userCreds{uid: uid, gid: uid, n: &e.seq}}))
}

// daemon returns a connection with the certificate of role for node.
func (e *authzEnv) daemon(role pki.Role, node string) *grpc.ClientConn {
	e.t.Helper()
	tc, err := pki.DaemonClientConfig(e.pki.Files(role, node))
	if err != nil {
		e.t.Fatal(err)
	}
	return e.conn(tc)
}

func (e *authzEnv) submit(uid uint32, req *api.SubmitRequest) uint64 {
	e.t.Helper()
	r, err := apirpc.NewJobServiceClient(e.user(uid)).Submit(ctx(e.t), req)
	if err != nil {
		e.t.Fatalf("uid %d submit: %v", uid, err)
	}
	return r.JobId
}

func wantCode(t *testing.T, what string, err error, code codes.Code) {
	t.Helper()
	if status.Code(err) != code {
		t.Errorf("%s: err = %v, want %s", what, err, code)
	}
}

func TestOwnerAndOperatorAct(t *testing.T) {
	e := newAuthzEnv(t)
	spec := func() *api.JobSpec {
		return &api.JobSpec{Name: "a", Script: "#!/bin/sh\nsecret-script\n", Env: map[string]string{"API_KEY": "k"},
			Output: "/home/alice/out", Hold: true}
	}
	// The request's user fields are not believed.
	id := e.submit(alice, &api.SubmitRequest{Spec: spec(), User: "root", Uid: 0, Gid: 6})
	j := e.s.State().Job(id)
	if j.Uid != alice || j.Gid != alice || j.User != "alice" {
		t.Errorf("job submitted by alice claiming root: owner %s uid %d gid %d, want alice %d %d", j.User, j.Uid, j.Gid, alice, alice)
	}
	if len(j.Secret) != 64 {
		t.Errorf("job secret %q, want 64 hex digits", j.Secret)
	}

	bobJobs := apirpc.NewJobServiceClient(e.user(bob))
	_, err := bobJobs.Cancel(ctx(t), &api.CancelRequest{JobIds: []uint64{id}, Uid: alice})
	wantCode(t, "bob cancels alice's job", err, codes.PermissionDenied)
	_, err = bobJobs.Hold(ctx(t), &api.HoldRequest{JobIds: []uint64{id}, Release: true})
	wantCode(t, "bob releases alice's job", err, codes.PermissionDenied)
	_, err = bobJobs.Requeue(ctx(t), &api.RequeueRequest{JobIds: []uint64{id}})
	wantCode(t, "bob requeues alice's job", err, codes.PermissionDenied)
	logs, err := bobJobs.StreamLogs(ctx(t), &api.LogsRequest{JobId: id, Rank: -1})
	if err == nil {
		_, err = logs.Recv()
	}
	wantCode(t, "bob reads alice's logs", err, codes.PermissionDenied)

	// What bob sees of alice's job: not its script, environment, output
	// or secret.
	got, err := bobJobs.GetJob(ctx(t), &api.GetJobRequest{JobId: id})
	if err != nil {
		t.Fatal(err)
	}
	if s := got.Job.Spec; s.Script != "" || len(s.Env) != 0 || s.Output != "" || got.Job.Secret != "" {
		t.Errorf("bob's GetJob of alice's job shows script %q env %v output %q secret %q, want none", s.Script, s.Env, s.Output, got.Job.Secret)
	}
	list, err := bobJobs.ListJobs(ctx(t), &api.ListJobsRequest{All: true})
	if err != nil || len(list.Jobs) != 1 || list.Jobs[0].Spec.Script != "" || list.Jobs[0].Secret != "" {
		t.Errorf("bob's ListJobs = %v, %v: want alice's job without its script or secret", list, err)
	}
	if e.s.State().Job(id).Spec.Script == "" {
		t.Error("redacting bob's view changed the stored job")
	}
	// Alice sees her own script but never the secret in a listing.
	mine, err := apirpc.NewJobServiceClient(e.user(alice)).GetJob(ctx(t), &api.GetJobRequest{JobId: id})
	if err != nil || mine.Job.Spec.Script == "" || mine.Job.Secret != "" {
		t.Errorf("alice's GetJob of her job: script %q secret %q (%v), want the script and no secret", mine.GetJob().GetSpec().GetScript(), mine.GetJob().GetSecret(), err)
	}

	// The owner and the operator may.
	if _, err := apirpc.NewJobServiceClient(e.user(alice)).Hold(ctx(t), &api.HoldRequest{JobIds: []uint64{id}, Release: true}); err != nil {
		t.Errorf("alice releases her job: %v", err)
	}
	id2 := e.submit(alice, &api.SubmitRequest{Spec: spec()})
	if _, err := apirpc.NewJobServiceClient(e.user(op)).Cancel(ctx(t), &api.CancelRequest{JobIds: []uint64{id2}}); err != nil {
		t.Errorf("the operator cancels alice's job: %v", err)
	}
	opView, err := apirpc.NewJobServiceClient(e.user(op)).GetJob(ctx(t), &api.GetJobRequest{JobId: id})
	if err != nil || opView.Job.Spec.Script == "" {
		t.Errorf("the operator's GetJob of alice's job: %v, %v: want its script", opView, err)
	}
}

func TestOperatorsOnly(t *testing.T) {
	e := newAuthzEnv(t)
	nice := &api.SubmitRequest{Spec: &api.JobSpec{Script: "x", Nice: -10}}
	_, err := apirpc.NewJobServiceClient(e.user(alice)).Submit(ctx(t), nice)
	wantCode(t, "alice submits with a negative nice", err, codes.PermissionDenied)
	if _, err := apirpc.NewJobServiceClient(e.user(op)).Submit(ctx(t), nice); err != nil {
		t.Errorf("the operator submits with a negative nice: %v", err)
	}
	high := &api.SubmitRequest{Spec: &api.JobSpec{Script: "x", Qos: "high"}}
	_, err = apirpc.NewJobServiceClient(e.user(alice)).Submit(ctx(t), high)
	wantCode(t, "alice submits with a QoS reserved to bob", err, codes.PermissionDenied)
	for _, uid := range []uint32{bob, op} {
		if _, err := apirpc.NewJobServiceClient(e.user(uid)).Submit(ctx(t), high); err != nil {
			t.Errorf("uid %d submits with QoS high: %v", uid, err)
		}
	}
	drain := &api.NodeStateRequest{Name: "node1", Reason: "test"}
	_, err = apirpc.NewNodeServiceClient(e.user(alice)).DrainNode(ctx(t), drain)
	wantCode(t, "alice drains a node", err, codes.PermissionDenied)
	_, err = apirpc.NewOperatorClient(e.user(alice)).RaftRemovePeer(ctx(t), &api.RaftRemovePeerRequest{Id: "s1"})
	wantCode(t, "alice removes a Raft peer", err, codes.PermissionDenied)
	if _, err := apirpc.NewNodeServiceClient(e.user(op)).DrainNode(ctx(t), drain); err != nil {
		t.Errorf("the operator drains a node: %v", err)
	}
	// Non-local root is no operator: it holds the MUNGE key on every node.
	_, err = apirpc.NewNodeServiceClient(e.user(0)).ResumeNode(ctx(t), drain)
	wantCode(t, "root through MUNGE resumes a node", err, codes.PermissionDenied)
}

func TestDaemonCallsNeedTheirCertificate(t *testing.T) {
	e := newAuthzEnv(t)
	reg := &api.RegisterRequest{Node: testNode("node1")}
	// A user, with a valid MUNGE credential but no certificate.
	_, err := apirpc.NewAgentServiceClient(e.user(alice)).Register(ctx(t), reg)
	wantCode(t, "a user registers a node", err, codes.Unauthenticated)
	// The agent of node2 acting for node1.
	node2 := apirpc.NewAgentServiceClient(e.daemon(pki.RoleAgent, "node2"))
	_, err = node2.Register(ctx(t), reg)
	wantCode(t, "node2's agent registers node1", err, codes.PermissionDenied)
	_, err = node2.UpdateTasks(ctx(t), &api.TaskUpdateRequest{Node: "node1", JobId: 1, Tasks: []*api.TaskStatus{{Rank: 0}}})
	wantCode(t, "node2's agent reports for node1", err, codes.PermissionDenied)
	w, err := node2.WatchAllocations(ctx(t), &api.WatchAllocationsRequest{Node: "node1"})
	if err == nil {
		_, err = w.Recv()
	}
	wantCode(t, "node2's agent watches node1's allocations", err, codes.PermissionDenied)
	// An agent joining Raft.
	_, err = apirpc.NewOperatorClient(e.daemon(pki.RoleAgent, "node1")).RaftJoin(ctx(t), &api.RaftJoinRequest{Server: &api.ServerInfo{Id: "evil", RaftAddr: "127.0.0.1:1", RpcAddr: "127.0.0.1:2"}})
	wantCode(t, "an agent joins Raft", err, codes.PermissionDenied)
	// A client without a server certificate claiming forwarded identity.
	fwd := metadata.AppendToOutgoingContext(ctx(t), auth.ForwardedUIDKey, "0", auth.ForwardedGIDKey, "0", auth.ForwardedLocalKey, "1")
	_, err = apirpc.NewNodeServiceClient(e.user(alice)).DrainNode(fwd, &api.NodeStateRequest{Name: "node1", Reason: "x"})
	wantCode(t, "a user forging forwarded root", err, codes.PermissionDenied)
}
