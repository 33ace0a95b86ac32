//go:build e2e

// Package security_test attacks a real cluster the way a user of a shared
// login node could, and checks that every attack fails: real server and
// agent processes with mutual TLS, users proven by a real munged, the real
// CLI run as two unprivileged users (cluster.UserA and UserB, which
// .ci/run creates). It needs root; without root, the users or munged the
// tests skip, or fail under LOOM_E2E_REQUIRE=1.
package security_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/loomhpc/loom/api"
	"github.com/loomhpc/loom/api/apirpc"
	"github.com/loomhpc/loom/auth"
	"github.com/loomhpc/loom/auth/munge"
	"github.com/loomhpc/loom/internal/harness"
	"github.com/loomhpc/loom/pki"
	"github.com/loomhpc/loom/test/cluster"
)

// secureCluster is one server in munge mode with a local socket and one
// agent, both with certificates, and the two test users.
type secureCluster struct {
	t        *testing.T
	dir      string // reachable by the users
	rpc      string
	socket   string
	munge    *munge.TestDaemon
	pki      *harness.PKI
	ca       string // the CA certificate, readable by the users
	alice    auth.User
	bob      auth.User
	root     apirpc.JobServiceClient
	homeOf   map[uint32]string
	serverLg *cluster.Proc
	agentLg  *cluster.Proc
}

func start(t *testing.T) *secureCluster {
	t.Helper()
	c := &secureCluster{t: t, alice: cluster.LookupUser(t, cluster.UserA), bob: cluster.LookupUser(t, cluster.UserB), homeOf: map[uint32]string{}}
	c.munge = munge.StartTestDaemon(t)
	c.dir = cluster.OpenDir(t, "loom-sec-")
	c.pki = cluster.PKI(t, c.dir)
	c.rpc = fmt.Sprintf("127.0.0.1:%d", cluster.FreePort(t))
	c.socket = filepath.Join(c.dir, "server.sock")
	sf := certs(t, c.pki, pki.RoleServer, "s1")
	c.ca = sf.CA
	c.serverLg = cluster.Start(t, c.dir, "s1", "server", "--name", "s1", "--data-dir", filepath.Join(c.dir, "s1"),
		"--rpc-addr", c.rpc, "--raft-addr", fmt.Sprintf("127.0.0.1:%d", cluster.FreePort(t)), "--metrics-addr", "-",
		"--auth", "munge", "--munge-socket", c.munge.Socket, "--local-socket", c.socket,
		"--tls-ca", sf.CA, "--tls-cert", sf.Cert, "--tls-key", sf.Key)
	af := certs(t, c.pki, pki.RoleAgent, "node1")
	c.agentLg = cluster.Start(t, c.dir, "node1", "agent", "--name", "node1", "--servers", c.rpc,
		"--data-dir", filepath.Join(c.dir, "node1"), "--listen-addr", "127.0.0.1:0", "--metrics-addr", "-",
		"--profile", "pcie-4", "--nvml=false", "--kill-grace", "1s", "--ports", "33100-33199",
		"--tls-ca", af.CA, "--tls-cert", af.Cert, "--tls-key", af.Key)
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(c.serverLg.Tail())
			t.Log(c.agentLg.Tail())
		}
	})
	var nodes apirpc.NodeServiceClient
	c.root, nodes = cluster.Client(t, "unix://"+c.socket)
	cluster.WaitFor(t, "the agent to register", 30*time.Second, func() bool {
		r, err := nodes.ListNodes(cluster.Ctx(t), &api.ListNodesRequest{})
		return err == nil && len(r.Nodes) == 1
	})
	for _, u := range []auth.User{c.alice, c.bob} {
		home := filepath.Join(c.dir, u.Name)
		if err := os.Mkdir(home, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(home, int(u.UID), int(u.GID)); err != nil {
			t.Fatal(err)
		}
		c.homeOf[u.UID] = home
	}
	return c
}

// loom runs the real CLI as u, over TCP with TLS and MUNGE, in u's
// directory, and returns its exit status and output.
func (c *secureCluster) loom(u auth.User, args ...string) (int, string) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	switch args[0] {
	case "sbatch", "squeue", "scancel", "sacct", "scontrol":
		args = append([]string{"slurm"}, args...)
	}
	cmd := exec.CommandContext(ctx, cluster.Binary(c.t), args...)
	cmd.Dir = c.homeOf[u.UID]
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + cmd.Dir, "USER=" + u.Name,
		"LOOM_ADDR=" + c.rpc, "LOOM_CACERT=" + c.ca, "LOOM_MUNGE_SOCKET=" + c.munge.Socket,
		"LOOM_TIMEOUT=20s"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: u.UID, Gid: u.GID, Groups: u.Groups}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		if _, ok := err.(*exec.ExitError); !ok {
			c.t.Fatalf("loom %s as %s: %v", strings.Join(args, " "), u.Name, err)
		}
	}
	return cmd.ProcessState.ExitCode(), string(out)
}

// sbatch submits as u and returns the job id.
func (c *secureCluster) sbatch(u auth.User, args ...string) uint64 {
	c.t.Helper()
	code, out := c.loom(u, append([]string{"sbatch", "--parsable"}, args...)...)
	id, err := strconv.ParseUint(strings.TrimSpace(out), 10, 64)
	if code != 0 || err != nil {
		c.t.Fatalf("sbatch %s as %s = %d, %q", strings.Join(args, " "), u.Name, code, out)
	}
	return id
}

func (c *secureCluster) job(id uint64) *api.Job {
	r, err := c.root.GetJob(cluster.Ctx(c.t), &api.GetJobRequest{JobId: id})
	if err != nil {
		return nil
	}
	return r.Job
}

func (c *secureCluster) waitEnded(id uint64) *api.Job {
	c.t.Helper()
	var j *api.Job
	cluster.WaitFor(c.t, fmt.Sprintf("job %d to end", id), 60*time.Second, func() bool {
		j = c.job(id)
		return j != nil && j.State.Terminal()
	})
	return j
}

const marker = "loom-secret-marker-7f3a"

// certs returns the files of p's certificate of role for node.
func certs(t *testing.T, p *harness.PKI, role pki.Role, node string) pki.Files {
	t.Helper()
	f, err := p.Files(role, node)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// User B cannot cancel, hold, release, requeue, or read the logs, script
// or environment of A's job.
func TestUserCannotTouchAnothersJob(t *testing.T) {
	c := start(t)
	held := c.sbatch(c.alice, "--hold", "--export=API_KEY="+marker, "--wrap", "echo "+marker)
	ran := c.sbatch(c.alice, "--wrap", "echo "+marker)
	c.waitEnded(ran)
	for _, args := range [][]string{
		{"scancel", fmt.Sprint(held)},
		{"scontrol", "release", fmt.Sprint(held)},
		{"scontrol", "hold", fmt.Sprint(held)},
		{"scontrol", "requeue", fmt.Sprint(ran)},
		{"logs", fmt.Sprint(ran)},
	} {
		code, out := c.loom(c.bob, args...)
		if code == 0 || strings.Contains(out, marker) {
			t.Errorf("%s as %s = %d, %q; want a refusal", strings.Join(args, " "), c.bob.Name, code, out)
		}
	}
	if j := c.job(held); j.State != api.JobState_PENDING || !j.Spec.Hold {
		t.Errorf("after bob's attempts alice's held job is %s (hold %v), want still held", j.State, j.Spec.Hold)
	}
	for _, args := range [][]string{
		{"squeue", "--json"}, {"scontrol", "show", "job", fmt.Sprint(held)}, {"sacct", "--json", "-j", fmt.Sprint(held)},
	} {
		code, out := c.loom(c.bob, args...)
		if strings.Contains(out, marker) || strings.Contains(out, "LOOM_JOB_SECRET") {
			t.Errorf("%s as %s = %d, shows alice's script or environment: %q", strings.Join(args, " "), c.bob.Name, code, out)
		}
	}
	// Alice sees her own, and may act on it.
	if code, out := c.loom(c.alice, "logs", fmt.Sprint(ran)); code != 0 || !strings.Contains(out, marker) {
		t.Errorf("logs %d as alice = %d, %q; want her job's output", ran, code, out)
	}
	if code, out := c.loom(c.alice, "scancel", fmt.Sprint(held)); code != 0 {
		t.Errorf("scancel %d as alice = %d, %q; want it cancelled", held, code, out)
	}
}

// A raw gRPC request, not through the CLI, that claims uid 0 in its body
// runs as the real caller.
func TestRawRequestClaimingRootRunsAsTheCaller(t *testing.T) {
	c := start(t)
	jobs, _ := cluster.ClientAs(t, "unix://"+c.socket, c.alice)
	home := c.homeOf[c.alice.UID]
	r, err := jobs.Submit(cluster.Ctx(t), &api.SubmitRequest{
		Spec: &api.JobSpec{Script: "#!/bin/sh\nid -u\n", WorkingDir: home, Output: "whoami.out"},
		User: "root", Uid: 0, Gid: 0,
	})
	if err != nil {
		t.Fatal(err)
	}
	j := c.waitEnded(r.JobId)
	if j.Uid != c.alice.UID || j.User != c.alice.Name {
		t.Errorf("job submitted by %s claiming root is owned by %s (uid %d)", c.alice.Name, j.User, j.Uid)
	}
	out, err := os.ReadFile(filepath.Join(home, "whoami.out"))
	if err != nil || strings.TrimSpace(string(out)) != fmt.Sprint(c.alice.UID) {
		t.Errorf("the job ran as %q (%v), want uid %d", out, err, c.alice.UID)
	}
	// Over TCP with a MUNGE credential, claiming root in the request
	// does not let bob act on alice's job, and alice acts as herself.
	cancel := &api.CancelRequest{JobIds: []uint64{r.JobId}, Uid: 0, User: "root"}
	_, err = apirpc.NewJobServiceClient(c.userConn(t, c.bob)).Cancel(cluster.Ctx(t), cancel)
	if status.Code(err) != codes.PermissionDenied {
		t.Errorf("bob's cancel of alice's job claiming root: %v, want PermissionDenied", err)
	}
	_, err = apirpc.NewJobServiceClient(c.userConn(t, c.alice)).Cancel(cluster.Ctx(t), cancel)
	if code := status.Code(err); code != codes.OK && code != codes.FailedPrecondition {
		t.Errorf("alice's cancel of her own ended job: %v, want it accepted or refused as already ended", err)
	}
}

// userConn is a TLS connection to the server's TCP port with MUNGE
// credentials made, as u, by the test munged.
func (c *secureCluster) userConn(t *testing.T, u auth.User) *grpc.ClientConn {
	t.Helper()
	tc, err := pki.CLIClientConfig(pki.Files{CA: c.ca})
	if err != nil {
		t.Fatal(err)
	}
	enc := asUserEncoder{u: u, socket: c.munge.Socket}
	conn, err := grpc.NewClient(c.rpc, grpc.WithTransportCredentials(credentials.NewTLS(tc)),
		grpc.WithPerRPCCredentials(auth.MungeCredentials{Munge: enc}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// asUserEncoder makes MUNGE credentials as u by running the munge
// command as u (munged seals the uid of the process that asks).
type asUserEncoder struct {
	u      auth.User
	socket string
}

func (e asUserEncoder) Encode(payload []byte) (string, error) {
	cmd := exec.Command("munge", "--socket", e.socket, "--string", string(payload))
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: e.u.UID, Gid: e.u.GID}}
	out, err := cmd.Output()
	return strings.TrimSpace(string(out)), err
}

// Daemon calls need a certificate of the right role, and an agent's
// certificate acts for its own node only.
func TestDaemonCallsNeedTheRightCertificate(t *testing.T) {
	c := start(t)
	reg := &api.RegisterRequest{Node: &api.Node{Name: "node1", Address: "127.0.0.1:1", Cpus: 1, MemoryMb: 1024}}
	dial := func(tc *tls.Config) apirpc.AgentServiceClient {
		var creds credentials.TransportCredentials = insecure.NewCredentials()
		if tc != nil {
			creds = credentials.NewTLS(tc)
		}
		conn, err := grpc.NewClient(c.rpc, grpc.WithTransportCredentials(creds))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return apirpc.NewAgentServiceClient(conn)
	}
	if _, err := dial(nil).Register(cluster.Ctx(t), reg); err == nil {
		t.Error("a plaintext client registered node1")
	}
	noCert, err := pki.CLIClientConfig(pki.Files{CA: c.ca})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dial(noCert).Register(cluster.Ctx(t), reg); status.Code(err) != codes.Unauthenticated {
		t.Errorf("a client without a certificate registering node1: %v, want Unauthenticated", err)
	}
	other, err := pki.DaemonClientConfig(certs(t, c.pki, pki.RoleAgent, "node2"))
	if err != nil {
		t.Fatal(err)
	}
	node2 := dial(other)
	if _, err := node2.Register(cluster.Ctx(t), reg); status.Code(err) != codes.PermissionDenied {
		t.Errorf("node2's agent registering node1: %v, want PermissionDenied", err)
	}
	if _, err := node2.UpdateTasks(cluster.Ctx(t), &api.TaskUpdateRequest{Node: "node1", JobId: 1, Tasks: []*api.TaskStatus{{}}}); status.Code(err) != codes.PermissionDenied {
		t.Errorf("node2's agent reporting for node1: %v, want PermissionDenied", err)
	}
	// A certificate of another CA is refused at the handshake.
	foreign := cluster.PKI(t, t.TempDir())
	fc, err := pki.DaemonClientConfig(certs(t, foreign, pki.RoleAgent, "node1"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dial(fc).Register(cluster.Ctx(t), reg); err == nil {
		t.Error("an agent certificate of another CA registered node1")
	}
}

// sbatch -o /etc/shadow followed by loom logs reveals nothing: the job
// fails naming the option, and nothing is read as root.
func TestShadowThroughOutputRevealsNothing(t *testing.T) {
	c := start(t)
	shadow, err := os.ReadFile("/etc/shadow")
	if err != nil {
		t.Skipf("no /etc/shadow: %v", err)
	}
	first := strings.SplitN(string(shadow), "\n", 2)[0]
	id := c.sbatch(c.alice, "-o", "/etc/shadow", "--wrap", "true")
	j := c.waitEnded(id)
	if j.State == api.JobState_COMPLETED {
		t.Errorf("job with -o /etc/shadow completed; want it refused")
	}
	reason := j.Reason
	for _, ts := range j.GetAllocation().GetTasks() {
		reason += " " + ts.Message
	}
	if !strings.Contains(reason, "--output=/etc/shadow") {
		t.Errorf("job %d ended %s with %q, want a reason naming --output=/etc/shadow", id, j.State, reason)
	}
	code, out := c.loom(c.alice, "logs", fmt.Sprint(id))
	if first != "" && strings.Contains(out, first) {
		t.Errorf("loom logs %d = %d printed /etc/shadow", id, code)
	}
	after, _ := os.ReadFile("/etc/shadow")
	if string(after) != string(shadow) {
		t.Error("/etc/shadow changed")
	}
}

// A symlink swapped in for a job's output file is not followed when the
// output is read.
func TestSwappedOutputSymlinkIsNotFollowed(t *testing.T) {
	c := start(t)
	shadow, err := os.ReadFile("/etc/shadow")
	if err != nil {
		t.Skipf("no /etc/shadow: %v", err)
	}
	first := strings.SplitN(string(shadow), "\n", 2)[0]
	id := c.sbatch(c.alice, "-o", "out.txt", "--wrap", "echo hello; rm -f out.txt; ln -s /etc/shadow out.txt")
	c.waitEnded(id)
	if fi, err := os.Lstat(filepath.Join(c.homeOf[c.alice.UID], "out.txt")); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Fatalf("the job did not swap its output for a symlink: %v", err)
	}
	code, out := c.loom(c.alice, "logs", fmt.Sprint(id))
	if first != "" && strings.Contains(out, first) {
		t.Errorf("loom logs %d = %d followed the symlink to /etc/shadow: %q", id, code, out)
	}
}

// Every rank has the job's secret, which no listing shows, even to the
// owner.
func TestRanksHaveTheJobSecretAndListingsDoNot(t *testing.T) {
	c := start(t)
	id := c.sbatch(c.alice, "-o", "secret.out", "--wrap", `printf '%s' "$LOOM_JOB_SECRET" | wc -c`)
	j := c.waitEnded(id)
	if j.State != api.JobState_COMPLETED {
		t.Fatalf("job %d %s: %s", id, j.State, j.Reason)
	}
	out, err := os.ReadFile(filepath.Join(c.homeOf[c.alice.UID], "secret.out"))
	if err != nil || strings.TrimSpace(string(out)) != "64" {
		t.Errorf("the rank's LOOM_JOB_SECRET is %q characters long (%v), want 64", out, err)
	}
	if j.Secret != "" {
		t.Errorf("GetJob (as root, an operator) shows the job secret %q", j.Secret)
	}
}

// A server or agent started without a gossip key does not start, unless
// told --insecure-gossip.
func TestNodeWithoutGossipKeyDoesNotStart(t *testing.T) {
	cluster.RequireRoot(t)
	dir := t.TempDir()
	p := cluster.PKI(t, dir)
	af := certs(t, p, pki.RoleAgent, "node9")
	for _, args := range [][]string{
		{"agent", "--name", "node9", "--servers", "127.0.0.1:1", "--data-dir", filepath.Join(dir, "a"), "--listen-addr", "127.0.0.1:0",
			"--metrics-addr", "-", "--nvml=false", "--gossip-join", "127.0.0.1:1", "--tls-ca", af.CA, "--tls-cert", af.Cert, "--tls-key", af.Key},
		{"server", "--name", "s9", "--data-dir", filepath.Join(dir, "s"), "--rpc-addr", "127.0.0.1:0", "--raft-addr", "127.0.0.1:0",
			"--metrics-addr", "-", "--gossip-addr", "127.0.0.1:0", "--tls=false", "--auth", "local", "--local-socket", filepath.Join(dir, "s.sock")},
	} {
		cmd := exec.Command(cluster.Binary(t), args...)
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), "no --gossip-key-file") {
			t.Errorf("loom %s without a gossip key: %v, %q; want it to refuse to start", args[0], err, out)
		}
	}
}

// A process that does not know a job's secret cannot join its netcoll
// ring, even knowing where the ring meets: alice's job waits for a third
// rank, and bob, who read MASTER_ADDR and MASTER_PORT, is refused by the
// ring's store before it reads anything else from him.
func TestRankWithoutTheSecretCannotJoinTheRing(t *testing.T) {
	c := start(t)
	loom := cluster.Binary(t)
	// Every rank (--every-rank) tells where the ring meets, then waits for
	// a ring of three, one more rank than the job has.
	script := fmt.Sprintf("#!/bin/sh\necho \"meet=$MASTER_ADDR:$MASTER_PORT\"\nWORLD_SIZE=3 exec %s netcoll-worker -b 1024 -e 1024 -iters 1 -warmup 0\n", loom)
	if err := os.WriteFile(filepath.Join(c.homeOf[c.alice.UID], "ring.sh"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(filepath.Join(c.homeOf[c.alice.UID], "ring.sh"), int(c.alice.UID), int(c.alice.GID)); err != nil {
		t.Fatal(err)
	}
	id := c.sbatch(c.alice, "-n", "2", "--every-rank", "-o", "ring-%t.out", "ring.sh")
	// The ranks wait for a third one for minutes: end the job, and wait
	// for its ranks to be gone, before the cluster is torn down.
	t.Cleanup(func() {
		c.loom(c.alice, "scancel", strconv.FormatUint(id, 10))
		cluster.WaitFor(t, "alice's ranks to be stopped", 60*time.Second, func() bool {
			j := c.job(id)
			return j != nil && j.State.Terminal() && !j.HoldsResources()
		})
	})
	var meet string
	cluster.WaitFor(t, "rank 0 to say where the ring meets", 60*time.Second, func() bool {
		b, err := os.ReadFile(filepath.Join(c.homeOf[c.alice.UID], "ring-0.out"))
		if _, after, ok := strings.Cut(string(b), "meet="); ok {
			meet, _, _ = strings.Cut(after, "\n")
		}
		return err == nil && strings.Contains(meet, ":")
	})
	host, port, _ := strings.Cut(meet, ":")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, loom, "netcoll-worker", "-b", "1024", "-e", "1024", "-iters", "1", "-warmup", "0")
	cmd.Env = []string{"PATH=/usr/bin:/bin", "RANK=2", "WORLD_SIZE=3", "LOCAL_RANK=0", "LOCAL_WORLD_SIZE=1",
		"MASTER_ADDR=" + host, "MASTER_PORT=" + port,
		"LOOM_JOB_SECRET=" + strings.Repeat("5a", 32)}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: c.bob.UID, Gid: c.bob.GID, Groups: c.bob.Groups}}
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("bob joined alice's ring with a guessed secret; he printed:\n%s", out)
	}
	if !strings.Contains(string(out), "authentication failed") {
		t.Fatalf("bob's rank failed, but not because the ring refused his secret (%v):\n%s", err, out)
	}
	if j := c.job(id); j == nil || j.State != api.JobState_RUNNING {
		r1, _ := os.ReadFile(filepath.Join(c.homeOf[c.alice.UID], "ring-1.out"))
		t.Fatalf("alice's job after bob's attempt: %v, want it still RUNNING and waiting for its own third rank; rank 1 printed:\n%s", j.GetState(), r1)
	}
}
