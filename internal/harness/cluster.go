package harness

import (
	"fmt"
	"path/filepath"
	"strings"
)

// Server is a loom server process and the addresses it was given.
type Server struct {
	*Proc
	RPC, Raft, Gossip string // listen addresses
	DataDir           string
}

// NewServer allocates the addresses of a server named name, with its data
// dir (dir/name) and log (dir/name.log) in dir, that runs binary. Its API
// and gossip listen on ip ("" for 127.0.0.1), Raft on loopback. Nothing is
// started: set Args (see ServerOptions.Args) and call Start.
func NewServer(binary, dir, name, ip string) (*Server, error) {
	s := &Server{
		Proc:    &Proc{Name: name, Binary: binary, Log: filepath.Join(dir, name+".log")},
		DataDir: filepath.Join(dir, name),
	}
	var err error
	if s.RPC, err = FreeAddr(ip); err != nil {
		return nil, err
	}
	if s.Raft, err = FreeAddr(""); err != nil {
		return nil, err
	}
	if s.Gossip, err = FreeAddr(ip); err != nil {
		return nil, err
	}
	return s, nil
}

// ServerOptions are the choices the servers of one cluster share.
type ServerOptions struct {
	// GossipKey, when set, makes the servers gossip with each other under
	// this key (base64), so that they notice dead agents.
	GossipKey string
	// Flags are more flags for every server, e.g. --node-down-grace 1s.
	Flags []string
}

// Args returns the command line of servers[i] as one of servers: a lone
// server bootstraps itself, several bootstrap together (each one --join-s
// them all). Metrics are off.
func (o ServerOptions) Args(servers []*Server, i int) []string {
	s := servers[i]
	args := []string{"server", "--name", s.Name, "--data-dir", s.DataDir,
		"--rpc-addr", s.RPC, "--raft-addr", s.Raft, "--metrics-addr", "-"}
	if len(servers) > 1 {
		args = append(args, "--bootstrap-expect", fmt.Sprint(len(servers)), "--join", strings.Join(Addrs(servers), ","))
	}
	if o.GossipKey != "" {
		args = append(args, "--gossip-addr", s.Gossip, "--gossip-join", strings.Join(Gossips(servers), ","), "--gossip-key", o.GossipKey)
	}
	return append(args, o.Flags...)
}

// StartServers starts n servers of binary, named s0, s1, …, that form one
// cluster, with their data dirs and logs in dir and their API and gossip
// on ip ("" for loopback). When one fails to start, those already started
// are killed.
func StartServers(binary, dir string, n int, ip string, o ServerOptions) ([]*Server, error) {
	servers := make([]*Server, n)
	for i := range n {
		s, err := NewServer(binary, dir, fmt.Sprintf("s%d", i), ip)
		if err != nil {
			return nil, err
		}
		servers[i] = s
	}
	for i, s := range servers {
		s.Args = o.Args(servers, i)
		if err := s.Start(); err != nil {
			for _, started := range servers[:i] {
				started.Kill()
			}
			return nil, err
		}
	}
	return servers, nil
}

// Addrs returns the servers' gRPC addresses.
func Addrs(servers []*Server) []string {
	var out []string
	for _, s := range servers {
		out = append(out, s.RPC)
	}
	return out
}

// Gossips returns the servers' gossip addresses.
func Gossips(servers []*Server) []string {
	var out []string
	for _, s := range servers {
		out = append(out, s.Gossip)
	}
	return out
}

// Agent describes a loom agent with simulated GPUs, running jobs as plain
// processes (root allowed, a 2 s kill grace).
type Agent struct {
	Name    string
	Dir     string // its data dir is Dir/Name
	Profile string // simulated GPU profile, e.g. dgx-h100
	// IP, when set, is the address it listens on and advertises; by
	// default it listens on 127.0.0.1 and advertises what it finds.
	IP string
	// Ports is the first of the 100 ports it hands to ranks. Agents on one
	// host need ranges that do not overlap.
	Ports   int
	Servers []string // the servers' gRPC addresses
	// Gossip, when set, are the servers' gossip addresses, which the agent
	// joins (under GossipKey) so that the leader notices when it dies.
	Gossip    []string
	GossipKey string
}

// Args returns the agent's command line.
func (a Agent) Args() []string {
	ip := a.IP
	if ip == "" {
		ip = "127.0.0.1"
	}
	args := []string{"agent", "--name", a.Name, "--servers", strings.Join(a.Servers, ","),
		"--data-dir", filepath.Join(a.Dir, a.Name), "--listen-addr", ip + ":0"}
	if a.IP != "" {
		args = append(args, "--advertise-ip", a.IP)
	}
	args = append(args, "--metrics-addr", "-",
		"--profile", a.Profile, "--nvml=false", "--allow-root", "--kill-grace", "2s",
		"--ports", fmt.Sprintf("%d-%d", a.Ports, a.Ports+99))
	if len(a.Gossip) > 0 {
		args = append(args, "--gossip-addr", ip+":0", "--gossip-join", strings.Join(a.Gossip, ","), "--gossip-key", a.GossipKey)
	}
	return args
}

// Proc returns the agent as a process of binary, logging to Dir/Name.log.
func (a Agent) Proc(binary string) *Proc {
	return &Proc{Name: a.Name, Binary: binary, Args: a.Args(), Log: filepath.Join(a.Dir, a.Name+".log")}
}
