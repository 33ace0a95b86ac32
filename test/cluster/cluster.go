// Package cluster starts real loom server and agent processes for the
// end-to-end and fault tests in test/: each is its own OS process, built
// from this tree, on loopback ports, so that kill -9 means what it says.
package cluster

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/loomhpc/loom/api"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// Binary returns the loom binary the tests run: $LOOM_BIN, or bin/loom at
// the repository root (make e2e builds it first).
func Binary(t testing.TB) string {
	t.Helper()
	if b := os.Getenv("LOOM_BIN"); b != "" {
		return b
	}
	_, file, _, _ := runtime.Caller(0)
	b := filepath.Join(filepath.Dir(file), "..", "..", "bin", "loom")
	if _, err := os.Stat(b); err != nil {
		t.Fatalf("no loom binary at %s: run `make build` (or make e2e) first", b)
	}
	return b
}

// SubmitRetrying submits req until a server accepts it (a cluster that
// has just started may have no leader or no nodes yet) and returns the
// job's id. Give req an idempotency token: a retry after a lost answer
// then finds the job instead of making another.
func SubmitRetrying(t testing.TB, jobs api.JobServiceClient, req *api.SubmitRequest, timeout time.Duration) uint64 {
	t.Helper()
	var id uint64
	WaitFor(t, "the submit to be accepted", timeout, func() bool {
		r, err := jobs.Submit(Ctx(t), req)
		if err == nil {
			id = r.JobId
		}
		return err == nil
	})
	return id
}

// Job reads job id, or returns nil when no server answers right now.
func Job(t testing.TB, jobs api.JobServiceClient, id uint64) *api.Job {
	r, err := jobs.GetJob(Ctx(t), &api.GetJobRequest{JobId: id})
	if err != nil {
		return nil
	}
	return r.Job
}

// OpenDir makes a temporary directory that jobs running as an
// unprivileged user can use as their working directory (t.TempDir's parent
// is private to the user running the tests), removed when the test ends.
func OpenDir(t testing.TB, prefix string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	return dir
}

// FreePort returns a loopback port nothing listens on right now.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Proc is one running loom process.
type Proc struct {
	Name  string
	Args  []string
	Log   string // its stderr and stdout
	netns string // run inside this network namespace
	cmd   *exec.Cmd
	done  chan struct{}
	mu    sync.Mutex
}

// Start runs loom with args, logging to dir/name.log.
func Start(t testing.TB, dir, name string, args ...string) *Proc {
	t.Helper()
	p := &Proc{Name: name, Args: args, Log: filepath.Join(dir, name+".log")}
	p.start(t)
	t.Cleanup(func() { p.Kill() })
	return p
}

func (p *Proc) start(t testing.TB) {
	t.Helper()
	f, err := os.OpenFile(p.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(Binary(t), p.Args...)
	if p.netns != "" {
		cmd = exec.Command("ip", append([]string{"netns", "exec", p.netns, Binary(t)}, p.Args...)...)
	}
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	p.mu.Lock()
	p.cmd, p.done = cmd, done
	p.mu.Unlock()
}

// Kill sends SIGKILL to the process (and what it started) and waits.
func (p *Proc) Kill() {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	<-done
}

// KillProcessOnly sends SIGKILL to the process alone, leaving any children
// it started (ranks of the exec driver) running.
func (p *Proc) KillProcessOnly() {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	cmd.Process.Kill()
	<-done
}

// Restart starts the process again with the same arguments.
func (p *Proc) Restart(t testing.TB) { p.start(t) }

// Tail returns the end of the process's log, for failure messages.
func (p *Proc) Tail() string {
	b, _ := os.ReadFile(p.Log)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return fmt.Sprintf("--- %s log ---\n%s", p.Name, b)
}

// Server is a loom server process with its addresses.
type Server struct {
	*Proc
	RPC, Raft, Gossip string
	DataDir           string
}

// StartServer starts a single-server cluster in dir.
func StartServer(t testing.TB, dir, name string) *Server {
	t.Helper()
	s := newServer(t, dir, name)
	s.Proc = Start(t, dir, name, "server", "--name", name, "--data-dir", s.DataDir,
		"--rpc-addr", s.RPC, "--raft-addr", s.Raft, "--metrics-addr", "-")
	return s
}

func newServer(t testing.TB, dir, name string) *Server {
	return &Server{
		RPC:     fmt.Sprintf("127.0.0.1:%d", FreePort(t)),
		Raft:    fmt.Sprintf("127.0.0.1:%d", FreePort(t)),
		Gossip:  fmt.Sprintf("127.0.0.1:%d", FreePort(t)),
		DataDir: filepath.Join(dir, name),
	}
}

// StartServers starts n servers that bootstrap one cluster together
// (--bootstrap-expect n, each --join-ing the others).
func StartServers(t testing.TB, dir string, n int) []*Server {
	return StartServersOn(t, dir, n, "127.0.0.1")
}

// StartServersOn is StartServers with the API and gossip on ip (a test
// host's address in a network namespace setup) instead of loopback.
func StartServersOn(t testing.TB, dir string, n int, ip string) []*Server {
	t.Helper()
	var servers []*Server
	var rpcs, gossips []string
	for i := range n {
		s := newServer(t, dir, fmt.Sprintf("s%d", i))
		s.RPC = strings.Replace(s.RPC, "127.0.0.1", ip, 1)
		s.Gossip = strings.Replace(s.Gossip, "127.0.0.1", ip, 1)
		servers = append(servers, s)
		rpcs = append(rpcs, s.RPC)
		gossips = append(gossips, s.Gossip)
	}
	for i, s := range servers {
		s.Proc = Start(t, dir, fmt.Sprintf("s%d", i), "server", "--name", fmt.Sprintf("s%d", i), "--data-dir", s.DataDir,
			"--rpc-addr", s.RPC, "--raft-addr", s.Raft, "--metrics-addr", "-",
			"--bootstrap-expect", fmt.Sprint(n), "--join", strings.Join(rpcs, ","),
			"--gossip-addr", s.Gossip, "--gossip-join", strings.Join(gossips, ","), "--gossip-key", GossipKey)
	}
	return servers
}

// GossipKey is the test clusters' gossip encryption key.
const GossipKey = "dGVzdC1rZXktMDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY="

// Gossips returns the servers' gossip addresses.
func Gossips(servers []*Server) []string {
	var out []string
	for _, s := range servers {
		out = append(out, s.Gossip)
	}
	return out
}

// StartGossipAgent starts an agent that also joins the servers' gossip
// pool, so the leader notices when it dies.
func StartGossipAgent(t testing.TB, dir, name, profile string, ports int, servers []*Server) *Proc {
	t.Helper()
	return Start(t, dir, name, AgentArgs(dir, name, profile, "127.0.0.1", ports, servers)...)
}

// AgentArgs is the command line of a gossiping agent whose addresses are
// on ip.
func AgentArgs(dir, name, profile, ip string, ports int, servers []*Server) []string {
	return []string{"agent", "--name", name, "--servers", strings.Join(Addrs(servers), ","),
		"--data-dir", filepath.Join(dir, name), "--listen-addr", ip + ":0", "--advertise-ip", ip, "--metrics-addr", "-",
		"--profile", profile, "--nvml=false", "--allow-root", "--kill-grace", "2s",
		"--ports", fmt.Sprintf("%d-%d", ports, ports+99),
		"--gossip-addr", ip + ":0", "--gossip-join", strings.Join(Gossips(servers), ","), "--gossip-key", GossipKey}
}

// StartIn runs loom with args inside network namespace ns.
func StartIn(t testing.TB, ns, dir, name string, args ...string) *Proc {
	t.Helper()
	p := &Proc{Name: name, Args: args, Log: filepath.Join(dir, name+".log"), netns: ns}
	p.start(t)
	t.Cleanup(func() { p.Kill() })
	return p
}

// Addrs returns the servers' gRPC addresses.
func Addrs(servers []*Server) []string {
	var out []string
	for _, s := range servers {
		out = append(out, s.RPC)
	}
	return out
}

// StartAgent starts an agent with a simulated profile, talking to servers.
func StartAgent(t testing.TB, dir, name, profile string, ports int, servers ...string) *Proc {
	t.Helper()
	return Start(t, dir, name, "agent", "--name", name, "--servers", strings.Join(servers, ","),
		"--data-dir", filepath.Join(dir, name), "--listen-addr", "127.0.0.1:0", "--metrics-addr", "-",
		"--profile", profile, "--nvml=false", "--allow-root", "--kill-grace", "2s",
		"--ports", fmt.Sprintf("%d-%d", ports, ports+99))
}

// Client is a gRPC connection to a server.
func Client(t testing.TB, addr string) (api.JobServiceClient, api.NodeServiceClient) {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return api.NewJobServiceClient(conn), api.NewNodeServiceClient(conn)
}

// WaitFor polls cond until it holds or timeout passes (scaled by
// LOOM_TEST_TIMEOUT_SCALE on slow machines).
func WaitFor(t testing.TB, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	if s := os.Getenv("LOOM_TEST_TIMEOUT_SCALE"); s != "" {
		var k float64
		if _, err := fmt.Sscan(s, &k); err == nil && k > 0 {
			timeout = time.Duration(float64(timeout) * k)
		}
	}
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// Ctx returns a context for one RPC.
func Ctx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// Gossiping is a cluster of servers and gossiping agents, up and
// registered.
type Gossiping struct {
	Servers []*Server
	Agents  map[string]*Proc // by node name: node1, node2, ...
	Jobs    api.JobServiceClient
	Nodes   api.NodeServiceClient
}

// StartGossiping starts nServers servers and nAgents gossiping agents with
// simulated DGX H100 nodes in dir, and waits until every node registered.
func StartGossiping(t testing.TB, dir string, nServers, nAgents int) *Gossiping {
	t.Helper()
	g := &Gossiping{Servers: StartServers(t, dir, nServers), Agents: map[string]*Proc{}}
	for i := 1; i <= nAgents; i++ {
		name := fmt.Sprintf("node%d", i)
		g.Agents[name] = StartGossipAgent(t, dir, name, "dgx-h100", 29500+100*i, g.Servers)
	}
	g.Jobs, g.Nodes = Client(t, g.Servers[0].RPC)
	WaitFor(t, fmt.Sprintf("%d registered nodes", nAgents), 30*time.Second, func() bool {
		r, err := g.Nodes.ListNodes(Ctx(t), &api.ListNodesRequest{})
		return err == nil && len(r.Nodes) == nAgents
	})
	return g
}
