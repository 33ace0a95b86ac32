package harness

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/loomhpc/loom/pki"
)

// Server is a loom server process and the addresses it was given.
type Server struct {
	*Proc
	RPC, Raft, Gossip string // listen addresses
	// Socket is the server's local socket, where clients of the test (as
	// the user running it) are identified by their peer credentials.
	Socket  string
	DataDir string
}

// Client is the address clients dial: the server's local socket.
func (s *Server) Client() string { return "unix://" + s.Socket }

// NewServer allocates the addresses of a server named name, with its data
// dir (dir/name), local socket and log (dir/name.log) in dir, that runs
// binary. Its API and gossip listen on ip ("" for 127.0.0.1), Raft on
// loopback. Nothing is started: set Args (see ServerOptions.Args) and
// call Start.
func NewServer(binary, dir, name, ip string) (*Server, error) {
	s := &Server{
		Proc:    &Proc{Name: name, Binary: binary, Log: filepath.Join(dir, name+".log")},
		DataDir: filepath.Join(dir, name),
		Socket:  filepath.Join(dir, name+".sock"),
	}
	if len(s.Socket) > maxSocketPath {
		short, err := os.MkdirTemp("", "loom-sock-")
		if err != nil {
			return nil, fmt.Errorf("harness: %w", err)
		}
		s.Socket = filepath.Join(short, name+".sock")
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

// maxSocketPath keeps a socket's path within the 108 bytes of
// sockaddr_un.
const maxSocketPath = 100

// ServerOptions are the choices the servers of one cluster share.
type ServerOptions struct {
	// PKI, when set, gives each server its certificate: the servers and
	// agents then talk mutual TLS. Nil runs them with --tls=false.
	PKI *PKI
	// GossipKeyFile, when set, makes the servers gossip with each other
	// under the key in this file, so that they notice dead agents.
	GossipKeyFile string
	// Flags are more flags for every server, e.g. --node-down-grace 1s.
	Flags []string
}

// Args returns the command line of servers[i] as one of servers: a lone
// server bootstraps itself, several bootstrap together (each one --join-s
// them all). Users are identified on the local socket (auth local), and
// metrics are off. It makes the server's certificate if need be.
func (o ServerOptions) Args(servers []*Server, i int) ([]string, error) {
	s := servers[i]
	args := []string{"server", "--name", s.Name, "--data-dir", s.DataDir,
		"--rpc-addr", s.RPC, "--raft-addr", s.Raft, "--metrics-addr", "-",
		"--auth", "local", "--local-socket", s.Socket}
	tls, err := o.PKI.tlsArgs(pki.RoleServer, s.Name)
	if err != nil {
		return nil, err
	}
	args = append(args, tls...)
	if len(servers) > 1 {
		args = append(args, "--bootstrap-expect", fmt.Sprint(len(servers)), "--join", strings.Join(Addrs(servers), ","))
	}
	if o.GossipKeyFile != "" {
		args = append(args, "--gossip-addr", s.Gossip, "--gossip-join", strings.Join(Gossips(servers), ","), "--gossip-key-file", o.GossipKeyFile)
	}
	return append(args, o.Flags...), nil
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
		args, err := o.Args(servers, i)
		if err == nil {
			s.Args = args
			err = s.Start()
		}
		if err != nil {
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

// Clients returns the addresses clients dial: the servers' local sockets.
func Clients(servers []*Server) []string {
	var out []string
	for _, s := range servers {
		out = append(out, s.Client())
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
	// ClientAddr, when set, is the LOOM_ADDR of the Slurm commands inside
	// its jobs (--client-addr): the servers' local sockets in a test.
	ClientAddr string
	// Gossip, when set, are the servers' gossip addresses, which the agent
	// joins (under the key in GossipKeyFile) so that the leader notices
	// when it dies.
	Gossip        []string
	GossipKeyFile string
	// PKI, when set, gives the agent its certificate; nil runs it with
	// --tls=false.
	PKI *PKI
}

// Args returns the agent's command line, making its certificate if need
// be.
func (a Agent) Args() ([]string, error) {
	ip := a.IP
	if ip == "" {
		ip = "127.0.0.1"
	}
	args := []string{"agent", "--name", a.Name, "--servers", strings.Join(a.Servers, ","),
		"--data-dir", filepath.Join(a.Dir, a.Name), "--listen-addr", ip + ":0"}
	if a.ClientAddr != "" {
		args = append(args, "--client-addr", a.ClientAddr)
	}
	if a.IP != "" {
		args = append(args, "--advertise-ip", a.IP)
	}
	args = append(args, "--metrics-addr", "-",
		"--profile", a.Profile, "--nvml=false", "--allow-root", "--kill-grace", "2s",
		"--ports", fmt.Sprintf("%d-%d", a.Ports, a.Ports+99))
	if len(a.Gossip) > 0 {
		args = append(args, "--gossip-addr", ip+":0", "--gossip-join", strings.Join(a.Gossip, ","), "--gossip-key-file", a.GossipKeyFile)
	}
	tls, err := a.PKI.tlsArgs(pki.RoleAgent, a.Name)
	if err != nil {
		return nil, err
	}
	return append(args, tls...), nil
}

// Proc returns the agent as a process of binary, logging to Dir/Name.log.
func (a Agent) Proc(binary string) (*Proc, error) {
	args, err := a.Args()
	if err != nil {
		return nil, err
	}
	return &Proc{Name: a.Name, Binary: binary, Args: args, Log: filepath.Join(a.Dir, a.Name+".log")}, nil
}
