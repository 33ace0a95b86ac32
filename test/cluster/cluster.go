// Package cluster starts real loom server and agent processes for the
// end-to-end and fault tests in test/: each is its own OS process, built
// from this tree, on loopback ports, so that kill -9 means what it says.
// It is the testing.TB face of internal/harness.
package cluster

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/loomhpc/loom/api"
	"github.com/loomhpc/loom/api/apirpc"
	"github.com/loomhpc/loom/internal/harness"
	"github.com/loomhpc/loom/pki"
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
func SubmitRetrying(t testing.TB, jobs apirpc.JobServiceClient, req *api.SubmitRequest, timeout time.Duration) uint64 {
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
func Job(t testing.TB, jobs apirpc.JobServiceClient, id uint64) *api.Job {
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
	return harness.Port(t)
}

// Proc is one running loom process, killed when the test ends.
type Proc struct {
	*harness.Proc
}

// Start runs loom with args, logging to dir/name.log.
func Start(t testing.TB, dir, name string, args ...string) *Proc {
	t.Helper()
	return start(t, &harness.Proc{Name: name, Binary: Binary(t), Args: args, Log: filepath.Join(dir, name+".log")})
}

// StartIn runs loom with args inside network namespace ns.
func StartIn(t testing.TB, ns, dir, name string, args ...string) *Proc {
	t.Helper()
	return start(t, &harness.Proc{Name: name, Binary: Binary(t), Args: args, Log: filepath.Join(dir, name+".log"), Netns: ns})
}

func start(t testing.TB, hp *harness.Proc) *Proc {
	t.Helper()
	if err := hp.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(hp.Kill)
	return &Proc{hp}
}

// Restart starts the process again with the same arguments.
func (p *Proc) Restart(t testing.TB) {
	t.Helper()
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
}

// Server is a loom server process with its addresses.
type Server struct {
	*harness.Server
}

// Restart starts the server again with the same arguments and data dir.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
}

// PKI returns the certificate authority of the test cluster in dir
// (dir/tls), creating it on first use: every server and agent the
// package starts in dir talks mutual TLS with a certificate from it.
func PKI(t testing.TB, dir string) *harness.PKI {
	t.Helper()
	p, err := harness.NewPKI(filepath.Join(dir, "tls"))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// ServerSecurityArgs are the flags with which a server named name in dir
// serves TLS with its certificate and identifies users on socket by their
// peer credentials, for tests that write a server's command line
// themselves.
func ServerSecurityArgs(t testing.TB, dir, name, socket string) []string {
	t.Helper()
	f, err := PKI(t, dir).Files(pki.RoleServer, name)
	if err != nil {
		t.Fatal(err)
	}
	return []string{"--auth", "local", "--local-socket", socket, "--tls-ca", f.CA, "--tls-cert", f.Cert, "--tls-key", f.Key}
}

// AgentTLSArgs are the flags with which the agent of node in dir talks
// TLS with its certificate.
func AgentTLSArgs(t testing.TB, dir, node string) []string {
	t.Helper()
	f, err := PKI(t, dir).Files(pki.RoleAgent, node)
	if err != nil {
		t.Fatal(err)
	}
	return []string{"--tls-ca", f.CA, "--tls-cert", f.Cert, "--tls-key", f.Key}
}

// StartServer starts a single-server cluster in dir, with any extra
// flags (--config FILE, say).
func StartServer(t testing.TB, dir, name string, flags ...string) *Server {
	t.Helper()
	s, err := harness.NewServer(Binary(t), dir, name, "")
	if err != nil {
		t.Fatal(err)
	}
	if s.Args, err = (harness.ServerOptions{PKI: PKI(t, dir), Flags: flags}).Args([]*harness.Server{s}, 0); err != nil {
		t.Fatal(err)
	}
	start(t, s.Proc)
	return &Server{s}
}

// StartServers starts n servers that bootstrap one cluster together
// (--bootstrap-expect n, each --join-ing the others).
func StartServers(t testing.TB, dir string, n int) []*Server {
	t.Helper()
	return StartServersOn(t, dir, n, "127.0.0.1")
}

// StartServersOn is StartServers with the API and gossip on ip (a test
// host's address in a network namespace setup) instead of loopback.
func StartServersOn(t testing.TB, dir string, n int, ip string) []*Server {
	t.Helper()
	started, err := harness.StartServers(Binary(t), dir, n, ip, harness.ServerOptions{PKI: PKI(t, dir), GossipKeyFile: GossipKeyFile(t, dir)})
	if err != nil {
		t.Fatal(err)
	}
	var servers []*Server
	for _, s := range started {
		t.Cleanup(s.Kill)
		servers = append(servers, &Server{s})
	}
	return servers
}

// GossipKey is the test clusters' gossip encryption key.
const GossipKey = "dGVzdC1rZXktMDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY="

// GossipKeyFile writes GossipKey to a file of mode 0600 in dir and
// returns its path, for --gossip-key-file.
func GossipKeyFile(t testing.TB, dir string) string {
	t.Helper()
	path, err := harness.WriteGossipKey(dir, GossipKey)
	if err != nil {
		t.Fatal(err)
	}
	return path
}

// Gossips returns the servers' gossip addresses.
func Gossips(servers []*Server) []string {
	return harness.Gossips(unwrap(servers))
}

// Addrs returns the servers' gRPC addresses, which daemons dial.
func Addrs(servers []*Server) []string {
	return harness.Addrs(unwrap(servers))
}

// Clients returns the addresses clients dial (Client, LOOM_ADDR): the
// servers' local sockets, where the test is identified as the user
// running it, an operator when that is root.
func Clients(servers []*Server) []string {
	return harness.Clients(unwrap(servers))
}

func unwrap(servers []*Server) []*harness.Server {
	var out []*harness.Server
	for _, s := range servers {
		out = append(out, s.Server)
	}
	return out
}

// StartGossipAgent starts an agent that also joins the servers' gossip
// pool, so the leader notices when it dies.
func StartGossipAgent(t testing.TB, dir, name, profile string, ports int, servers []*Server) *Proc {
	t.Helper()
	return Start(t, dir, name, AgentArgs(t, dir, name, profile, "127.0.0.1", ports, servers)...)
}

// AgentArgs is the command line of a gossiping agent whose addresses are
// on ip.
func AgentArgs(t testing.TB, dir, name, profile, ip string, ports int, servers []*Server) []string {
	t.Helper()
	args, err := harness.Agent{Name: name, Dir: dir, Profile: profile, IP: ip, Ports: ports, PKI: PKI(t, dir),
		Servers: Addrs(servers), ClientAddr: strings.Join(Clients(servers), ","),
		Gossip: Gossips(servers), GossipKeyFile: GossipKeyFile(t, dir)}.Args()
	if err != nil {
		t.Fatal(err)
	}
	return args
}

// StartAgent starts an agent with a simulated profile, talking to
// servers; the Slurm commands inside its jobs reach the servers on their
// local sockets, as the job's user.
func StartAgent(t testing.TB, dir, name, profile string, ports int, servers ...*Server) *Proc {
	t.Helper()
	args, err := harness.Agent{Name: name, Dir: dir, Profile: profile, Ports: ports, Servers: Addrs(servers),
		ClientAddr: strings.Join(Clients(servers), ","), PKI: PKI(t, dir)}.Args()
	if err != nil {
		t.Fatal(err)
	}
	return Start(t, dir, name, args...)
}

// Client is a gRPC connection to a server: addr is its local socket
// (Server.Client()), where the test acts as the user running it.
func Client(t testing.TB, addr string) (apirpc.JobServiceClient, apirpc.NodeServiceClient) {
	t.Helper()
	conn, err := harness.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return apirpc.NewJobServiceClient(conn), apirpc.NewNodeServiceClient(conn)
}

// WaitFor polls cond until it holds or timeout passes (scaled by
// LOOM_TEST_TIMEOUT_SCALE on slow machines).
func WaitFor(t testing.TB, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	harness.WaitFor(t, what, timeout, cond)
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
	Jobs    apirpc.JobServiceClient
	Nodes   apirpc.NodeServiceClient
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
	t.Cleanup(func() {
		if t.Failed() {
			for _, s := range g.Servers {
				t.Log(s.Tail())
			}
			for _, a := range g.Agents {
				t.Log(a.Tail())
			}
		}
	})
	g.Jobs, g.Nodes = Client(t, g.Servers[0].Client())
	WaitFor(t, fmt.Sprintf("%d registered nodes", nAgents), 30*time.Second, func() bool {
		r, err := g.Nodes.ListNodes(Ctx(t), &api.ListNodesRequest{})
		return err == nil && len(r.Nodes) == nAgents
	})
	return g
}

// WaitSameState waits until every server ops reaches reports the same
// applied index and state hash, and returns them as "ID@INDEX" for the log.
func WaitSameState(t testing.TB, what string, timeout time.Duration, ops []apirpc.OperatorClient) []string {
	t.Helper()
	var seen []string
	WaitFor(t, what, timeout, func() bool {
		seen = seen[:0]
		var first *api.ServerStatusResponse
		for _, op := range ops {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			st, err := op.ServerStatus(ctx, &api.ServerStatusRequest{})
			cancel()
			if err != nil {
				return false
			}
			seen = append(seen, fmt.Sprintf("%s@%d", st.Server.Id, st.AppliedIndex))
			if first == nil {
				first = st
			} else if st.AppliedIndex != first.AppliedIndex || st.StateHash != first.StateHash {
				return false
			}
		}
		return true
	})
	return seen
}
