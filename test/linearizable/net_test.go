//go:build e2e

package linearizable

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/loomhpc/loom/internal/harness"
	"github.com/loomhpc/loom/test/cluster"
)

// serverNet gives each server of a test its own network namespace,
// joined to a bridge in the host's by a veth pair, so that taking the
// host end of one pair down cuts that server off from the other servers
// and the agent (Raft, forwarding, gossip, allocation streams all go
// over it). Clients dial the servers' local sockets, which are files and
// so reachable from every namespace: a client can still talk to a cut-off
// server, which must then refuse to acknowledge anything.
type serverNet struct {
	bridge, bridgeIP string
	ns, hostIf, ip   []string // per server
}

func ipRun(args ...string) error {
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		return fmt.Errorf("ip %v: %v: %s", args, err, out)
	}
	return nil
}

func mustIP(t *testing.T, args ...string) {
	t.Helper()
	if err := ipRun(args...); err != nil {
		t.Fatal(err)
	}
}

// newServerNet makes the bridge and n namespaces, removed when the test
// ends (after the processes in them, which are cleaned up first).
func newServerNet(t *testing.T, n int) *serverNet {
	t.Helper()
	harness.Require(t, "root (for network namespaces)", os.Geteuid() == 0)
	_, err := exec.LookPath("ip")
	harness.Require(t, "the ip command (apt-get install iproute2)", err == nil)
	id := os.Getpid() % 250
	sn := &serverNet{bridge: fmt.Sprintf("llbr%d", id), bridgeIP: fmt.Sprintf("10.233.%d.1", id)}
	exec.Command("ip", "link", "del", sn.bridge).Run()
	harness.Require(t, "network namespaces (ip netns add)", ipRun("link", "add", sn.bridge, "type", "bridge") == nil)
	t.Cleanup(func() { exec.Command("ip", "link", "del", sn.bridge).Run() })
	mustIP(t, "addr", "add", sn.bridgeIP+"/24", "dev", sn.bridge)
	mustIP(t, "link", "set", sn.bridge, "up")
	for i := range n {
		ns, host, inner := fmt.Sprintf("llin%ds%d", id, i), fmt.Sprintf("llh%ds%d", id, i), fmt.Sprintf("lln%ds%d", id, i)
		ip := fmt.Sprintf("10.233.%d.%d", id, 10+i)
		exec.Command("ip", "netns", "del", ns).Run()
		exec.Command("ip", "link", "del", host).Run()
		harness.Require(t, "network namespaces (ip netns add)", ipRun("netns", "add", ns) == nil)
		t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
		mustIP(t, "link", "add", host, "type", "veth", "peer", "name", inner)
		t.Cleanup(func() { exec.Command("ip", "link", "del", host).Run() })
		mustIP(t, "link", "set", inner, "netns", ns)
		mustIP(t, "link", "set", host, "master", sn.bridge)
		mustIP(t, "link", "set", host, "up")
		mustIP(t, "-n", ns, "addr", "add", ip+"/24", "dev", inner)
		mustIP(t, "-n", ns, "link", "set", inner, "up")
		mustIP(t, "-n", ns, "link", "set", "lo", "up")
		sn.ns, sn.hostIf, sn.ip = append(sn.ns, ns), append(sn.hostIf, host), append(sn.ip, ip)
	}
	return sn
}

// cut takes server i's link down: packets to and from it are dropped,
// so its connections hang rather than fail, as in a real partition.
func (sn *serverNet) cut(t *testing.T, i int) { mustIP(t, "link", "set", sn.hostIf[i], "down") }

// heal brings server i's link back.
func (sn *serverNet) heal(t *testing.T, i int) { mustIP(t, "link", "set", sn.hostIf[i], "up") }

// startServers starts one server in each namespace, forming one cluster,
// every address (API, Raft, gossip) on the namespace's IP, where each has
// its own port space.
func (sn *serverNet) startServers(t *testing.T, dir string) []*cluster.Server {
	t.Helper()
	var hs []*harness.Server
	sockets := shortDir(t)
	for i, ip := range sn.ip {
		name := fmt.Sprintf("s%d", i)
		hs = append(hs, &harness.Server{
			Proc:    &harness.Proc{Name: name, Binary: cluster.Binary(t), Log: filepath.Join(dir, name+".log"), Netns: sn.ns[i]},
			RPC:     net.JoinHostPort(ip, "7070"),
			Raft:    net.JoinHostPort(ip, "7071"),
			Gossip:  net.JoinHostPort(ip, "7072"),
			Socket:  filepath.Join(sockets, name+".sock"),
			DataDir: filepath.Join(dir, name),
		})
	}
	opts := harness.ServerOptions{PKI: cluster.PKI(t, dir), GossipKeyFile: cluster.GossipKeyFile(t, dir)}
	var out []*cluster.Server
	for i, s := range hs {
		args, err := opts.Args(hs, i)
		if err != nil {
			t.Fatal(err)
		}
		s.Args = args
		if err := s.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Kill)
		out = append(out, &cluster.Server{Server: s})
	}
	return out
}

// shortDir is a directory for local sockets, whose paths must fit in
// sockaddr_un.
func shortDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "loom-lin-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}
