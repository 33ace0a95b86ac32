//go:build e2e

// Package prometheus runs the real Prometheus (Debian's package) against a
// Loom server and two agents, with the scrape configuration shipped in
// deploy/prometheus (its alert rules included), and the queries of the
// Grafana dashboard in deploy/grafana.
package prometheus

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/loomhpc/loom/api"
	"github.com/loomhpc/loom/internal/harness"
	"github.com/loomhpc/loom/test/cluster"
)

func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// requirePrometheus finds the prometheus binary. CI installs it and sets
// LOOM_E2E_REQUIRE=1, so that there a missing binary fails the test
// instead of skipping it.
func requirePrometheus(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("prometheus")
	harness.Require(t, "the prometheus binary (apt-get install prometheus)", err == nil)
	return p
}

// promQuery runs an instant query and returns its result vector.
func promQuery(t *testing.T, addr, q string) ([]map[string]any, error) {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/api/v1/query?query=" + url.QueryEscape(q))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var out struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			ResultType string           `json:"resultType"`
			Result     []map[string]any `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return nil, err
	}
	if out.Status != "success" {
		return nil, fmt.Errorf("query %q: %s", q, out.Error)
	}
	return out.Data.Result, nil
}

// ruleHealth counts the alerting rules Prometheus has loaded and those it
// has evaluated cleanly, and describes the first whose evaluation failed
// ("NAME: ERROR"; empty when none has).
func ruleHealth(addr string) (loaded, ok int, failed string, err error) {
	resp, err := http.Get("http://" + addr + "/api/v1/rules?type=alert")
	if err != nil {
		return 0, 0, "", err
	}
	defer resp.Body.Close()
	var out struct {
		Data struct {
			Groups []struct {
				Rules []struct {
					Name      string `json:"name"`
					Health    string `json:"health"`
					LastError string `json:"lastError"`
				} `json:"rules"`
			} `json:"groups"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return 0, 0, "", err
	}
	for _, g := range out.Data.Groups {
		for _, r := range g.Rules {
			loaded++
			switch r.Health {
			case "ok":
				ok++
			case "err":
				if failed == "" {
					failed = r.Name + ": " + r.LastError
				}
			}
		}
	}
	return loaded, ok, failed, nil
}

// TestPrometheusScrapesTheCluster: Prometheus, configured with the shipped
// file pointed at the test's server, discovers the server and both agents
// through the server's HTTP discovery, scrapes them, sees the GPUs a
// running job holds under its user, and accepts every query of the shipped
// dashboard.
func TestPrometheusScrapesTheCluster(t *testing.T) {
	bin := requirePrometheus(t)
	// The job runs as cluster.UserA, who must reach its working directory.
	learner := cluster.LookupUser(t, cluster.UserA)
	dir := cluster.OpenDir(t, "loom-prom-")
	metrics := fmt.Sprintf("127.0.0.1:%d", cluster.FreePort(t))
	rpc := fmt.Sprintf("127.0.0.1:%d", cluster.FreePort(t))
	socket := filepath.Join(dir, "server.sock")
	cluster.Start(t, dir, "server", append([]string{"server", "--name", "server", "--data-dir", filepath.Join(dir, "server"),
		"--rpc-addr", rpc, "--raft-addr", fmt.Sprintf("127.0.0.1:%d", cluster.FreePort(t)), "--metrics-addr", metrics},
		cluster.ServerSecurityArgs(t, dir, "server", socket)...)...)
	for i := 1; i <= 2; i++ {
		name := fmt.Sprintf("node%d", i)
		cluster.Start(t, dir, name, append([]string{"agent", "--name", name, "--servers", rpc,
			"--data-dir", filepath.Join(dir, name), "--listen-addr", "127.0.0.1:0",
			"--metrics-addr", "127.0.0.1:0", "--profile", "dgx-h100", "--nvml=false",
			"--ports", fmt.Sprintf("%d-%d", 32000+100*i, 32099+100*i)}, cluster.AgentTLSArgs(t, dir, name)...)...)
	}
	jobs, nodes := cluster.ClientAs(t, "unix://"+socket, learner)
	cluster.WaitFor(t, "the agents to register", 30*time.Second, func() bool {
		r, err := nodes.ListNodes(cluster.Ctx(t), &api.ListNodesRequest{})
		return err == nil && len(r.Nodes) == 2
	})

	// The shipped configuration, pointed at this server, scraping every second.
	shipped, err := os.ReadFile(filepath.Join(repoRoot(), "deploy", "prometheus", "prometheus.yml"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := string(shipped)
	cfg = regexp.MustCompile(`(?m)^\s*- url: http://loom[23]:7080/.*\n`).ReplaceAllString(cfg, "")
	cfg = strings.ReplaceAll(cfg, "http://loom1:7080", "http://"+metrics)
	cfg = strings.ReplaceAll(cfg, "scrape_interval: 15s", "scrape_interval: 1s")
	cfg = strings.ReplaceAll(cfg, "evaluation_interval: 15s", "evaluation_interval: 1s")
	cfg = regexp.MustCompile(`(?m)^(\s*- url: .*)$`).ReplaceAllString(cfg, "$1\n        refresh_interval: 1s")
	cfgPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	// The alert rules it names, beside it as in deploy/prometheus.
	rules, err := os.ReadFile(filepath.Join(repoRoot(), "deploy", "prometheus", "rules.yml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "rules.yml"), rules, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("promtool", "check", "config", cfgPath).CombinedOutput(); err != nil {
		t.Fatalf("promtool check config: %v\n%s\n%s", err, out, cfg)
	}
	promAddr := fmt.Sprintf("127.0.0.1:%d", cluster.FreePort(t))
	prom := exec.Command(bin, "--config.file="+cfgPath, "--storage.tsdb.path="+filepath.Join(dir, "tsdb"),
		"--web.listen-address="+promAddr, "--log.level=warn")
	promLog, err := os.Create(filepath.Join(dir, "prometheus.log"))
	if err != nil {
		t.Fatal(err)
	}
	prom.Stdout, prom.Stderr = promLog, promLog
	if err := prom.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		prom.Process.Kill()
		prom.Wait()
		if t.Failed() {
			b, _ := os.ReadFile(promLog.Name())
			t.Logf("prometheus log:\n%s", b)
		}
	})

	up := func(job string) int {
		r, err := promQuery(t, promAddr, fmt.Sprintf(`sum(up{job=%q})`, job))
		if err != nil || len(r) == 0 {
			return 0
		}
		v := r[0]["value"].([]any)[1].(string)
		var n int
		fmt.Sscan(v, &n)
		return n
	}
	cluster.WaitFor(t, "Prometheus to scrape the server and both agents", 60*time.Second, func() bool {
		return up("loom-servers") == 1 && up("loom-agents") == 2
	})
	// Every alert rule evaluates without error against the live series.
	cluster.WaitFor(t, "Prometheus to evaluate every alert rule", 30*time.Second, func() bool {
		loaded, ok, failed, err := ruleHealth(promAddr)
		if failed != "" {
			t.Fatalf("alert rule %s", failed)
		}
		return err == nil && loaded >= 7 && ok == loaded
	})
	// The relabelling of the shipped file gives agents' series the node name.
	r, err := promQuery(t, promAddr, `count by (node) (DCGM_FI_DEV_GPU_UTIL)`)
	if err != nil {
		t.Fatal(err)
	}
	if len(r) != 2 {
		t.Fatalf("DCGM series by node: %v, want node1 and node2 with 8 GPUs each", r)
	}

	sub, err := jobs.Submit(cluster.Ctx(t), &api.SubmitRequest{
		Spec: &api.JobSpec{Name: "held", NodesMin: 1, GpusPerNode: 3, WorkingDir: dir, Script: "#!/bin/sh\nexec sleep 60\n"},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		jobs.Cancel(cluster.Ctx(t), &api.CancelRequest{JobIds: []uint64{sub.JobId}})
	})
	var byUser []map[string]any
	deadline := time.Now().Add(60 * time.Second)
	for {
		byUser, err = promQuery(t, promAddr, `count by (user) (DCGM_FI_DEV_GPU_UTIL{user!=""})`)
		if err == nil && len(byUser) == 1 && byUser[0]["metric"].(map[string]any)["user"] == learner.Name &&
			byUser[0]["value"].([]any)[1] == "3" {
			break
		}
		if time.Now().After(deadline) {
			j, _ := jobs.GetJob(cluster.Ctx(t), &api.GetJobRequest{JobId: sub.JobId})
			t.Fatalf("GPUs by user = %v (%v), want %s holding 3; job %d is %s (%s)", byUser, err, learner.Name, sub.JobId, j.GetJob().GetState(), j.GetJob().GetReason())
		}
		time.Sleep(200 * time.Millisecond)
	}

	// Every query of the shipped dashboard parses and runs.
	b, err := os.ReadFile(filepath.Join(repoRoot(), "deploy", "grafana", "dashboards", "loom-cluster.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("dashboard: %v", err)
	}
	queries := 0
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			queries++
			if _, err := promQuery(t, promAddr, tg.Expr); err != nil {
				t.Errorf("panel %q: %v", p.Title, err)
			}
		}
	}
	if queries < 10 {
		t.Fatalf("the dashboard has %d queries, want the full set", queries)
	}
	// And the headline figure comes right: 3 of 16 GPUs allocated, once a
	// scrape of the server (every second, like the agents') has seen it.
	deadline = time.Now().Add(30 * time.Second)
	for {
		r, err = promQuery(t, promAddr, `max(loom_gpus{state="allocated"}) / sum(max by (state) (loom_gpus))`)
		if err == nil && len(r) == 1 && r[0]["value"].([]any)[1] == "0.1875" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("allocated share = %v (%v), want 0.1875 (3 of 16 GPUs)", r, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
