package devcluster

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/user"
	"strings"
	"testing"
	"time"

	"github.com/loomhpc/loom/api"
	"github.com/loomhpc/loom/api/apirpc"
	"github.com/loomhpc/loom/internal/harness"
)

func scrape(t *testing.T, addr string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestMetricsWhileJobRuns: the agent exports DCGM-named GPU series labelled
// with the job and user holding each GPU, and the server counts the job.
func TestMetricsWhileJobRuns(t *testing.T) {
	c, err := Start(context.Background(), Options{
		Agents: 1, Profile: "dgx-h100", RPCAddr: "127.0.0.1:0", DataDir: t.TempDir(),
		Metrics: true, ServerMetricsAddr: "127.0.0.1:0", Logger: testLogger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	conn, err := harness.Dial(c.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	jobs := apirpc.NewJobServiceClient(conn)
	id := submit(t, jobs, &api.JobSpec{GpusPerNode: 2, Script: "#!/bin/sh\nexec sleep 30\n"})
	harness.WaitFor(t, "job to run", 10*time.Second, func() bool { return getJob(t, jobs, id).State == api.JobState_RUNNING })

	// The job is the test's user's: the server takes the caller from the
	// connection.
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	agentText := scrape(t, c.Agents[0].MetricsAddr())
	held := 0
	for _, line := range strings.Split(agentText, "\n") {
		if strings.HasPrefix(line, "DCGM_FI_DEV_GPU_UTIL{") && strings.Contains(line, fmt.Sprintf(`job="%d"`, id)) && strings.Contains(line, fmt.Sprintf(`user=%q`, me.Username)) {
			held++
		}
	}
	if held != 2 {
		t.Fatalf("agent /metrics has %d DCGM_FI_DEV_GPU_UTIL series labelled job=%d user=%s, want 2:\n%s", held, id, me.Username, agentText)
	}
	for _, name := range []string{"DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_POWER_USAGE", "DCGM_FI_DEV_GPU_TEMP", "loom_agent_tasks_running 1"} {
		if !strings.Contains(agentText, name) {
			t.Errorf("agent /metrics lacks %s", name)
		}
	}
	serverText := scrape(t, c.Server.MetricsAddr())
	for _, want := range []string{`loom_jobs{state="RUNNING"} 1`, `loom_gpus{state="allocated"} 2`, `loom_gpus{state="idle"} 6`, "loom_queue_pending_jobs 0", "loom_raft_leader 1"} {
		if !strings.Contains(serverText, want) {
			t.Errorf("server /metrics lacks %q", want)
		}
	}
	if _, err := jobs.Cancel(context.Background(), &api.CancelRequest{JobIds: []uint64{id}}); err != nil {
		t.Fatal(err)
	}
	waitDone(t, jobs, id)
}

// TestPrometheusDiscovery: the server lists every agent's and its own
// /metrics address in Prometheus' HTTP discovery format, and each listed
// target answers a scrape.
func TestPrometheusDiscovery(t *testing.T) {
	c, err := Start(context.Background(), Options{
		Agents: 2, Profile: "dgx-h100", RPCAddr: "127.0.0.1:0", DataDir: t.TempDir(),
		Metrics: true, ServerMetricsAddr: "127.0.0.1:0", Logger: testLogger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	get := func(path string) []struct {
		Targets []string          `json:"targets"`
		Labels  map[string]string `json:"labels"`
	} {
		t.Helper()
		resp, err := http.Get("http://" + c.Server.MetricsAddr() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
			t.Fatalf("%s: Content-Type %q", path, ct)
		}
		var groups []struct {
			Targets []string          `json:"targets"`
			Labels  map[string]string `json:"labels"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&groups); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		return groups
	}
	var agents []struct {
		Targets []string          `json:"targets"`
		Labels  map[string]string `json:"labels"`
	}
	harness.WaitFor(t, "both agents to be listed", 10*time.Second, func() bool {
		agents = get("/v1/sd/agents")
		return len(agents) == 2
	})
	seen := map[string]bool{}
	for _, g := range agents {
		if len(g.Targets) != 1 {
			t.Fatalf("agent group %+v: want one target", g)
		}
		node := g.Labels["__meta_loom_node"]
		seen[node] = true
		if g.Labels["__meta_loom_partitions"] != ",batch," {
			t.Errorf("node %s: partitions label %q, want \",batch,\"", node, g.Labels["__meta_loom_partitions"])
		}
		if !strings.Contains(scrape(t, g.Targets[0]), "DCGM_FI_DEV_GPU_UTIL{") {
			t.Errorf("node %s: target %s serves no DCGM series", node, g.Targets[0])
		}
	}
	if !seen["node1"] || !seen["node2"] {
		t.Fatalf("listed nodes %v, want node1 and node2", seen)
	}
	var servers []struct {
		Targets []string          `json:"targets"`
		Labels  map[string]string `json:"labels"`
	}
	harness.WaitFor(t, "the server to be listed", 10*time.Second, func() bool {
		servers = get("/v1/sd/servers")
		return len(servers) == 1
	})
	if servers[0].Targets[0] != c.Server.MetricsAddr() || servers[0].Labels["__meta_loom_leader"] != "true" {
		t.Fatalf("servers = %+v, want %s as leader", servers, c.Server.MetricsAddr())
	}
	if !strings.Contains(scrape(t, servers[0].Targets[0]), "loom_") {
		t.Fatalf("server target serves no loom_ series")
	}
}
