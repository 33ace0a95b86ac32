package harness

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/loomhpc/loom/api"
	"github.com/loomhpc/loom/api/apirpc"
	"github.com/loomhpc/loom/pki"
	"google.golang.org/grpc"
)

func TestScale(t *testing.T) {
	tests := []struct {
		env  string
		want time.Duration
	}{
		{"", 10 * time.Second},
		{"2", 20 * time.Second},
		{"0.5", 5 * time.Second},
		{"0", 10 * time.Second},
		{"-3", 10 * time.Second},
		{"fast", 10 * time.Second},
	}
	for _, tt := range tests {
		t.Setenv(ScaleEnv, tt.env)
		if got := Scale(10 * time.Second); got != tt.want {
			t.Errorf("Scale(10s) with %s=%q = %s, want %s", ScaleEnv, tt.env, got, tt.want)
		}
	}
}

func TestWait(t *testing.T) {
	t.Setenv(ScaleEnv, "")
	calls := 0
	if err := Wait(context.Background(), "three calls", time.Minute, func() bool { calls++; return calls == 3 }); err != nil || calls != 3 {
		t.Errorf("Wait(cond true on call 3) = %v after %d calls, want nil after 3", err, calls)
	}

	err := Wait(context.Background(), "never", 30*time.Millisecond, func() bool { return false })
	if !errors.Is(err, ErrTimeout) || !strings.Contains(err.Error(), "waiting for never") {
		t.Errorf("Wait(cond never true) = %v, want ErrTimeout naming the condition", err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := Wait(ctx, "never", time.Minute, func() bool { return false }); !errors.Is(err, context.Canceled) {
		t.Errorf("Wait(cancelled ctx) = %v, want context.Canceled", err)
	}
}

// fatalRecorder is a TB that records the failure instead of ending a test.
type fatalRecorder struct{ msg string }

func (r *fatalRecorder) Helper()                        {}
func (r *fatalRecorder) Fatalf(format string, a ...any) { r.msg = format }

func TestWaitForFailsTheTest(t *testing.T) {
	r := &fatalRecorder{}
	WaitFor(r, "never", 20*time.Millisecond, func() bool { return false })
	if r.msg == "" {
		t.Error("WaitFor(cond never true) did not fail the test")
	}
}

func TestFreePort(t *testing.T) {
	port := Port(t)
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		t.Fatalf("listen on the free port %d: %v", port, err)
	}
	l.Close()
	addr, err := FreeAddr("")
	if err != nil || !strings.HasPrefix(addr, "127.0.0.1:") {
		t.Errorf("FreeAddr(\"\") = %q, %v, want a 127.0.0.1 address", addr, err)
	}
}

func TestProcKillAndStartAgain(t *testing.T) {
	dir := t.TempDir()
	p := &Proc{Name: "sleeper", Binary: "/bin/sh", Args: []string{"-c", "echo up; exec sleep 60"}, Log: filepath.Join(dir, "sleeper.log")}
	p.Kill() // never started: nothing to do
	if p.Exited() {
		t.Error("Exited() = true before the first start, want false")
	}
	ups := func(n int) func() bool {
		return func() bool {
			b, _ := os.ReadFile(p.Log)
			return strings.Count(string(b), "up\n") == n
		}
	}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	WaitFor(t, "the first start's line", 10*time.Second, ups(1))
	if p.Exited() {
		t.Error("Exited() = true while running, want false")
	}
	p.Kill()
	if !p.Exited() {
		t.Error("Exited() = false after Kill, want true")
	}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	WaitFor(t, "the second start's line in the same log", 10*time.Second, ups(2))
	p.KillProcessOnly()
	if tail := p.Tail(); !strings.Contains(tail, "sleeper log") || strings.Count(tail, "up\n") != 2 {
		t.Errorf("Tail() = %q, want the log's two lines under its name", tail)
	}
}

func TestServerArgs(t *testing.T) {
	dir := t.TempDir()
	var servers []*Server
	for _, name := range []string{"s0", "s1", "s2"} {
		s, err := NewServer("loom", dir, name, "")
		if err != nil {
			t.Fatal(err)
		}
		servers = append(servers, s)
	}
	if servers[0].DataDir != filepath.Join(dir, "s0") || servers[0].Log != filepath.Join(dir, "s0.log") {
		t.Errorf("NewServer(s0) data dir %q log %q, want both in %s", servers[0].DataDir, servers[0].Log, dir)
	}
	flag := func(args []string, name string) string {
		if i := slices.Index(args, name); i >= 0 && i+1 < len(args) {
			return args[i+1]
		}
		return ""
	}
	lone, err := ServerOptions{}.Args(servers[:1], 0)
	if err != nil {
		t.Fatal(err)
	}
	if flag(lone, "--bootstrap-expect") != "" || flag(lone, "--join") != "" || flag(lone, "--gossip-addr") != "" || !slices.Contains(lone, "--tls=false") {
		t.Errorf("a lone server's args %q ask for peers or gossip, or TLS without a PKI", lone)
	}
	p, err := NewPKI(filepath.Join(dir, "tls"))
	if err != nil {
		t.Fatal(err)
	}
	o := ServerOptions{PKI: p, GossipKeyFile: "/k", Flags: []string{"--node-down-grace", "1s"}}
	three, err := o.Args(servers, 1)
	if err != nil {
		t.Fatal(err)
	}
	files, _ := p.Files(pki.RoleServer, "s1")
	for name, want := range map[string]string{
		"--name": "s1", "--rpc-addr": servers[1].RPC, "--bootstrap-expect": "3",
		"--join": strings.Join(Addrs(servers), ","), "--gossip-addr": servers[1].Gossip,
		"--gossip-join": strings.Join(Gossips(servers), ","), "--gossip-key-file": "/k", "--node-down-grace": "1s",
		"--auth": "local", "--local-socket": servers[1].Socket, "--tls-cert": files.Cert, "--tls-ca": files.CA,
	} {
		if got := flag(three, name); got != want {
			t.Errorf("server s1 of 3: %s %q, want %q", name, got, want)
		}
	}
}

func TestAgentArgs(t *testing.T) {
	a := Agent{Name: "node1", Dir: "/d", Profile: "dgx-h100", Ports: 29600, Servers: []string{"a:1", "b:2"}}
	want := "agent --name node1 --servers a:1,b:2 --data-dir /d/node1 --listen-addr 127.0.0.1:0 --metrics-addr - " +
		"--profile dgx-h100 --nvml=false --allow-root --kill-grace 2s --ports 29600-29699 --tls=false"
	if got, err := a.Args(); err != nil || strings.Join(got, " ") != want {
		t.Errorf("Args() = %q, %v, want %q", strings.Join(got, " "), err, want)
	}
	p, err := NewPKI(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	a.IP, a.Gossip, a.GossipKeyFile, a.PKI = "10.0.0.2", []string{"g:1"}, "/k", p
	f, _ := p.Files(pki.RoleAgent, "node1")
	want = "agent --name node1 --servers a:1,b:2 --data-dir /d/node1 --listen-addr 10.0.0.2:0 --advertise-ip 10.0.0.2 --metrics-addr - " +
		"--profile dgx-h100 --nvml=false --allow-root --kill-grace 2s --ports 29600-29699 " +
		"--gossip-addr 10.0.0.2:0 --gossip-join g:1 --gossip-key-file /k --tls-ca " + f.CA + " --tls-cert " + f.Cert + " --tls-key " + f.Key
	if got, err := a.Args(); err != nil || strings.Join(got, " ") != want {
		t.Errorf("Args() with IP, gossip and TLS = %q, %v, want %q", strings.Join(got, " "), err, want)
	}
}

// statusServer answers ServerStatus as a leader or a follower, or fails.
type statusServer struct {
	apirpc.OperatorClient
	leader bool
	err    error
}

func (s statusServer) ServerStatus(context.Context, *api.ServerStatusRequest, ...grpc.CallOption) (*api.ServerStatusResponse, error) {
	if s.err != nil {
		return nil, s.err
	}
	return &api.ServerStatusResponse{Server: &api.ServerInfo{Leader: s.leader}}, nil
}

func TestLeader(t *testing.T) {
	down := errors.New("connection refused")
	tests := []struct {
		servers []apirpc.OperatorClient
		want    int
	}{
		{[]apirpc.OperatorClient{statusServer{}, statusServer{leader: true}, statusServer{}}, 1},
		{[]apirpc.OperatorClient{statusServer{err: down}, statusServer{}, statusServer{leader: true}}, 2},
		{[]apirpc.OperatorClient{statusServer{err: down}, statusServer{}}, -1},
		{nil, -1},
	}
	for i, tt := range tests {
		got, st := Leader(context.Background(), tt.servers)
		if got != tt.want || (got >= 0) != (st != nil) {
			t.Errorf("case %d: Leader() = %d, %v, want %d", i, got, st, tt.want)
		}
	}
	if _, err := WaitLeader(context.Background(), tests[2].servers, 30*time.Millisecond); !errors.Is(err, ErrTimeout) {
		t.Errorf("WaitLeader(no leader) = %v, want ErrTimeout", err)
	}
}

// skipRecorder records whether Require skipped or failed, and with what.
type skipRecorder struct{ skipped, failed string }

func (r *skipRecorder) Helper()                        {}
func (r *skipRecorder) Fatalf(format string, a ...any) { r.failed = fmt.Sprintf(format, a...) }
func (r *skipRecorder) Skipf(format string, a ...any)  { r.skipped = fmt.Sprintf(format, a...) }

func TestRequire(t *testing.T) {
	tests := []struct {
		env             string
		ok              bool
		skipped, failed bool
	}{
		{"", true, false, false},
		{"1", true, false, false},
		{"", false, true, false},
		{"0", false, true, false},
		{"1", false, false, true},
	}
	for _, tc := range tests {
		t.Setenv(RequireEnv, tc.env)
		var r skipRecorder
		Require(&r, "the ip command", tc.ok)
		if (r.skipped != "") != tc.skipped || (r.failed != "") != tc.failed {
			t.Errorf("Require(ok=%v) with %s=%q: skipped %q, failed %q; want skip %v, fail %v",
				tc.ok, RequireEnv, tc.env, r.skipped, r.failed, tc.skipped, tc.failed)
		}
		for _, msg := range []string{r.skipped, r.failed} {
			if msg != "" && !strings.Contains(msg, "needs the ip command") {
				t.Errorf("Require message %q does not say what is needed", msg)
			}
		}
	}
}
