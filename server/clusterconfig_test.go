package server

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/loomhpc/loom/api"
	"github.com/loomhpc/loom/api/apirpc"
	"github.com/loomhpc/loom/auth"
	"github.com/loomhpc/loom/clusterconf"
	"github.com/loomhpc/loom/internal/harness"
	"github.com/loomhpc/loom/pki"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

const configV1 = `[scheduler]
default_time = "1:00:00"

[[qos]]
name = "low"

[[qos]]
name = "high"
priority = 100
preempt = ["low"]
`

// TestClusterConfigReplicatedAndReloaded: the leader replicates its file
// when it takes office; a reload through a follower changes default_time
// and a QoS on every server; a file that fails validation is refused and
// changes nothing; after a failover the configuration stays.
func TestClusterConfigReplicatedAndReloaded(t *testing.T) {
	path := filepath.Join(t.TempDir(), "loom.toml")
	write := func(text string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(configV1)
	e := newAuthzEnvWith(t, func(c *Config) { c.ClusterConfigPath = path })
	v1, err := clusterconf.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	harness.WaitFor(t, "the leader to replicate its file", 10*time.Second, func() bool {
		return e.s.State().Config().GetSha256() == v1.Sha256
	})

	servers := []*Server{e.s}
	for _, name := range []string{"s2", "s3"} {
		files := e.pki.Files(pki.RoleServer, name)
		s, err := New(Config{
			Name: name, DataDir: filepath.Join(t.TempDir(), name), RPCAddr: "127.0.0.1:0", RaftAddr: "127.0.0.1:0", MetricsAddr: "-",
			Join: []string{e.s.RPCAddr()}, Fast: true, RaftLogLevel: "error",
			Auth: auth.ModeMunge, Munge: &fakeMunge{seen: map[string]bool{}}, TLS: &files,
			Policy:            e.s.cfg.Policy,
			ClusterConfigPath: path,
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		servers = append(servers, s)
	}
	same := func(what string, want string) {
		t.Helper()
		harness.WaitFor(t, what, 15*time.Second, func() bool {
			for _, s := range servers {
				if s.State().Config().GetSha256() != want {
					return false
				}
			}
			for _, s := range servers[1:] {
				if !proto.Equal(s.State().Config(), servers[0].State().Config()) {
					return false
				}
			}
			return true
		})
	}
	same("every server to hold the first file", v1.Sha256)
	follower := *e
	follower.addr = servers[1].RPCAddr()
	harness.WaitFor(t, "s2 to know where the leader's API is", 10*time.Second, func() bool {
		return servers[1].State().Server("s1").GetRpcAddr() != ""
	})

	// reload asks through a follower, retrying while a leader is elected
	// (joins may cost an election on a loaded machine).
	reload := func(uid uint32) (*api.ReloadConfigResponse, error) {
		t.Helper()
		var resp *api.ReloadConfigResponse
		var err error
		harness.WaitFor(t, "a reload that reaches a leader", 15*time.Second, func() bool {
			resp, err = apirpc.NewOperatorClient(follower.user(uid)).ReloadConfig(ctx(t), &api.ReloadConfigRequest{})
			return status.Code(err) != codes.Unavailable
		})
		return resp, err
	}
	// Only operators reload.
	_, err = reload(alice)
	wantCode(t, "alice reloading", err, codes.PermissionDenied)

	// An unchanged file is unchanged.
	resp, err := reload(op)
	if err != nil || resp.Changed {
		t.Fatalf("reload of the same file = %v, %v; want unchanged", resp, err)
	}

	write(strings.Replace(strings.Replace(configV1, `"1:00:00"`, `"2:00:00"`, 1), "priority = 100", "priority = 500", 1))
	resp, err = reload(op)
	if err != nil || !resp.Changed {
		t.Fatalf("reload through a follower = %v, %v; want changed", resp, err)
	}
	v2 := resp.Config
	if v2.GetScheduler().GetDefaultTimeS() != 7200 || v2.GetQos()[1].GetPriority() != 500 || v2.GetLoadedBy() == "" {
		t.Fatalf("reloaded config = %v; want default_time 2h, high priority 500, and who loaded it", v2)
	}
	same("every server to hold the reloaded file", v2.Sha256)
	if got := clusterconf.ToScheduler(servers[2].State().Config()).DefaultTimeLimit; got != 2*time.Hour {
		t.Errorf("s3 schedules with a default time of %v, want 2h", got)
	}

	// A file that fails validation is refused with its error, and nothing changes.
	write(configV1 + "\n[[qos]]\nname = \"urgent\"\npreempt = [\"nobody\"]\n")
	harness.WaitFor(t, "the servers to apply everything", 10*time.Second, func() bool {
		return servers[1].State().Index() == servers[0].State().Index() && servers[2].State().Index() == servers[0].State().Index()
	})
	before := servers[0].State().Index()
	_, err = reload(op)
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), path+`:14: [[qos]] "urgent" preempt: unknown QoS "nobody"`) {
		t.Fatalf("reload of an invalid file: %v; want FailedPrecondition naming %s:14", err, path)
	}
	for _, s := range servers {
		if s.State().Config().GetSha256() != v2.Sha256 {
			t.Fatalf("%s changed its config after a refused reload", s.cfg.Name)
		}
	}
	if after := servers[0].State().Index(); after != before {
		t.Errorf("a refused reload committed entries %d..%d", before, after)
	}

	// Failover: the old leader goes; the new one keeps the configuration
	// (its file holds the same text again, so it proposes nothing).
	write(strings.Replace(strings.Replace(configV1, `"1:00:00"`, `"2:00:00"`, 1), "priority = 100", "priority = 500", 1))
	// What SIGHUP does on a follower: ask the leader, as root on its host.
	for _, s := range servers {
		if s.IsLeader() {
			continue
		}
		var resp *api.ReloadConfigResponse
		harness.WaitFor(t, "a follower's reload to reach the leader", 15*time.Second, func() bool {
			resp, err = s.ReloadConfig(ctx(t))
			return status.Code(err) != codes.Unavailable
		})
		if err != nil || resp.Changed || resp.Config.GetSha256() != v2.Sha256 {
			t.Fatalf("%s.ReloadConfig (SIGHUP) = %v, %v; want unchanged", s.cfg.Name, resp, err)
		}
		break
	}

	var rest []*Server
	for _, s := range servers {
		if s.IsLeader() {
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			continue
		}
		rest = append(rest, s)
	}
	if len(rest) != 2 {
		t.Fatalf("%d servers led at once", 3-len(rest))
	}
	harness.WaitFor(t, "a new leader", 15*time.Second, func() bool { return rest[0].IsLeader() || rest[1].IsLeader() })
	servers = rest
	same("the survivors to keep the configuration", v2.Sha256)
	if by := servers[0].State().Config().GetLoadedBy(); by != v2.LoadedBy {
		t.Errorf("after failover the config was loaded by %s, want %s's (unchanged)", by, v2.LoadedBy)
	}
}
