//go:build e2e

// Package prometheus runs the real Prometheus (Debian's package) against a
// Loom server and two agents, with the scrape configuration shipped in
// deploy/prometheus (its alert rules included), and the queries of the
// Grafana dashboard in deploy/grafana.
package prometheus

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math"
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
	"github.com/loomhpc/loom/api/apirpc"
	"github.com/loomhpc/loom/internal/harness"
	"github.com/loomhpc/loom/test/cluster"
	"google.golang.org/protobuf/proto"
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

// promRule is one rule as Prometheus's /api/v1/rules reports it.
type promRule struct {
	Name      string `json:"name"`
	Health    string `json:"health"`
	LastError string `json:"lastError"`
}

// loadedRules returns the rules of a type ("alert" or "record") that
// Prometheus has loaded, in its order.
func loadedRules(addr, typ string) ([]promRule, error) {
	resp, err := http.Get("http://" + addr + "/api/v1/rules?type=" + typ)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var out struct {
		Data struct {
			Groups []struct {
				Rules []promRule `json:"rules"`
			} `json:"groups"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return nil, err
	}
	var rules []promRule
	for _, g := range out.Data.Groups {
		rules = append(rules, g.Rules...)
	}
	return rules, nil
}

// ruleHealth counts the alerting rules Prometheus has loaded and those it
// has evaluated cleanly, and describes the first whose evaluation failed
// ("NAME: ERROR"; empty when none has).
func ruleHealth(addr string) (loaded, ok int, failed string, err error) {
	rules, err := loadedRules(addr, "alert")
	if err != nil {
		return 0, 0, "", err
	}
	for _, r := range rules {
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
	// node1 serves the default partition (batch), node2 the debug one.
	for i, part := range []string{"batch", "debug"} {
		i++
		name := fmt.Sprintf("node%d", i)
		cluster.Start(t, dir, name, append([]string{"agent", "--name", name, "--servers", rpc, "--partitions", part,
			"--data-dir", filepath.Join(dir, name), "--listen-addr", "127.0.0.1:0",
			"--metrics-addr", "127.0.0.1:0", "--profile", "dgx-h100", "--nvml=false",
			// Jobs of a second or two: report GPU use every second. Sampling
			// every second too leaves most of such a job to the samples the
			// agent takes at a rank's start and end, which the used-GPU
			// check below would miss by up to a second per GPU.
			"--gpu-usage-interval", "1s", "--gpu-usage-report-interval", "1s",
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

	// The workload: two users, two accounts, two partitions, a job that
	// completes, one that fails, one that times out, one held, and one
	// that keeps its 3 GPUs until the test ends. alice's jobs go to the
	// default partition (batch, node1), bob's to debug (node2).
	bob := cluster.LookupUser(t, cluster.UserB)
	bobJobs, _ := cluster.ClientAs(t, "unix://"+socket, bob)
	type submitted struct {
		client apirpc.JobServiceClient
		id     uint64
	}
	submit := func(c apirpc.JobServiceClient, name, account string, gpus uint32, limit int64, hold bool, script string) submitted {
		t.Helper()
		partition := ""
		if c == bobJobs {
			partition = "debug"
		}
		r, err := c.Submit(cluster.Ctx(t), &api.SubmitRequest{Spec: &api.JobSpec{
			Name: name, Account: account, Partition: partition, NodesMin: 1, GpusPerNode: gpus, TimeLimitS: limit, Hold: hold,
			WorkingDir: dir, Requeue: proto.Bool(false), Script: "#!/bin/sh\n" + script + "\n"}})
		if err != nil {
			t.Fatalf("submit %s: %v", name, err)
		}
		t.Cleanup(func() { c.Cancel(cluster.Ctx(t), &api.CancelRequest{JobIds: []uint64{r.JobId}}) })
		return submitted{c, r.JobId}
	}
	held := submit(jobs, "held", "vision", 3, 0, false, "exec sleep 120")
	finite := []submitted{
		submit(jobs, "ok", "vision", 2, 0, false, "sleep 2"),
		submit(jobs, "fails", "vision", 1, 0, false, "sleep 1; exit 3"),
		submit(bobJobs, "slow", "nlp", 4, 2, false, "exec sleep 60"),
		submit(bobJobs, "quick", "nlp", 1, 0, false, "sleep 1"),
	}
	submit(bobJobs, "on-hold", "nlp", 1, 0, true, "true")

	// GPU-seconds each user's finished jobs held, from their records.
	gpuSeconds := func(j *api.Job) float64 {
		gpus := 0
		for _, r := range j.GetAllocation().GetRanks() {
			gpus += len(r.GpuUuids)
		}
		return float64(gpus) * float64(j.GetEndUnixMs()-j.GetStartUnixMs()) / 1000
	}
	finished := map[string]float64{}
	used := map[string]float64{} // busy GPU-seconds, from the same records
	ended := map[api.JobState]int{}
	for _, f := range finite {
		var j *api.Job
		// A batch job's allocation slot reports its GPU use when it
		// stops, after the job's end: wait for every rank's end.
		cluster.WaitFor(t, fmt.Sprintf("job %d and its ranks to end", f.id), 60*time.Second, func() bool {
			r, err := f.client.GetJob(cluster.Ctx(t), &api.GetJobRequest{JobId: f.id})
			j = r.GetJob()
			if err != nil || !j.GetState().Terminal() {
				return false
			}
			for _, ts := range j.GetAllocation().GetTasks() {
				if !ts.Ended() {
					return false
				}
			}
			return true
		})
		finished[j.GetUser()] += gpuSeconds(j)
		used[j.GetUser()] += float64(j.GetUsedGpuMs()) / 1000
		// The simulator's busy GPUs read 90% ± 6, and the agent counts a
		// rank over its whole life: from the sample it takes when it
		// reports the rank running to the one it takes for the end report.
		// So the figure is 84% to 96% of the GPU time between the rank's
		// reported start and end, give or take 0.1 s per GPU for the
		// milliseconds' rounding and the samples' timing.
		var life float64 // GPU-seconds between the ranks' reported starts and ends
		for i, ts := range j.GetAllocation().GetTasks() {
			gpus := float64(len(j.GetAllocation().GetRanks()[i].GetGpuUuids()))
			life += gpus * float64(ts.GetEndedUnixMs()-ts.GetStartedUnixMs()) / 1000
		}
		gpus := float64(len(j.GetAllocation().GetRanks()[0].GetGpuUuids()))
		if u := float64(j.GetUsedGpuMs()) / 1000; u < 0.84*life-0.1*gpus || u > 0.96*life+0.1*gpus {
			t.Errorf("job %d used %.3f GPU-seconds over its ranks' %.3f GPU-seconds of life (%.3f allocated), want 84%% to 96%% of the life (± 0.1 s per GPU)",
				j.GetId(), u, life, gpuSeconds(j))
		}
		ended[j.GetState()]++
	}
	if want := map[api.JobState]int{api.JobState_COMPLETED: 2, api.JobState_FAILED: 1, api.JobState_TIMEOUT: 1}; !maps.Equal(ended, want) {
		t.Fatalf("the workload ended %v, want %v", ended, want)
	}
	heldJob := cluster.Job(t, jobs, held.id)
	if heldJob.GetState() != api.JobState_RUNNING {
		t.Fatalf("job %d is %s, want RUNNING", held.id, heldJob.GetState())
	}

	// The counters as Prometheus scraped them: bob's jobs have all ended,
	// so his GPU-seconds are exactly theirs; alice's grow with her running
	// job, by 3 GPU-seconds a second, so hers match within a scrape
	// interval (1 s, and 1 s more for the sample's age).
	sample := func(q string) (map[string]float64, float64) {
		r, err := promQuery(t, promAddr, q)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]float64{}
		var at float64
		for _, s := range r {
			m := s["metric"].(map[string]any)
			// The key is the values of these labels the series has,
			// joined by "/": "loombob", or "debug/TIMEOUT".
			var key []string
			for _, l := range []string{"partition", "user", "state", "reason", "account"} {
				if v, ok := m[l].(string); ok {
					key = append(key, v)
				}
			}
			v := s["value"].([]any)
			at = v[0].(float64)
			var f float64
			fmt.Sscan(v[1].(string), &f)
			out[strings.Join(key, "/")] = f
		}
		return out, at
	}
	var last string
	ok := eventually(60*time.Second, func() bool {
		got, at := sample(`sum by (user) (max by (user, account) (loom_job_gpu_seconds_total))`)
		aliceWant := finished[learner.Name] + 3*(at*1000-float64(heldJob.GetStartUnixMs()))/1000
		last = fmt.Sprintf("GPU-seconds %v at %.3f, want %s %.3f (±6) and %s %.3f", got, at, learner.Name, aliceWant, bob.Name, finished[bob.Name])
		return math.Abs(got[bob.Name]-finished[bob.Name]) < 0.01 && math.Abs(got[learner.Name]-aliceWant) <= 6
	})
	if !ok {
		t.Fatal(last)
	}
	// loom report reads the same jobs through ListJobs (as root on the
	// server's socket, an operator): bob's GPU-seconds of the last hour
	// are his finished jobs', whole seconds.
	cmd := exec.Command(cluster.Binary(t), "report", "user", "top", "-P", "-n", "-t", "seconds", "start=now-1hours", "end=now")
	cmd.Env = append(os.Environ(), "LOOM_ADDR=unix://"+socket)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("loom report: %v\n%s", err, out)
	}
	wantLine := fmt.Sprintf("loom|%s|nlp|%d|", bob.Name, int64(finished[bob.Name]+0.5))
	if !strings.Contains(string(out), "\n"+wantLine) && !strings.HasPrefix(string(out), wantLine) {
		t.Fatalf("loom report user top printed\n%s\nwant a line starting %q", out, wantLine)
	}
	// Used GPU time (issue #19): bob's busy GPU-seconds as Prometheus
	// scraped them are his jobs' records'; most of what they held.
	t.Logf("finished jobs' GPU-seconds held %v, used %v", finished, used)
	if used[bob.Name] < 0.5*finished[bob.Name] {
		t.Errorf("%s's jobs used %.3f of %.3f GPU-seconds, want at least half (busy simulated GPUs)", bob.Name, used[bob.Name], finished[bob.Name])
	}
	ok = eventually(30*time.Second, func() bool {
		got, _ := sample(`sum by (user) (max by (user, account) (loom_job_used_gpu_seconds_total))`)
		last = fmt.Sprintf("used GPU-seconds %v, want %s %.3f and %s above 0", got, bob.Name, used[bob.Name], learner.Name)
		return math.Abs(got[bob.Name]-used[bob.Name]) < 0.01 && got[learner.Name] > 0
	})
	if !ok {
		t.Fatal(last)
	}
	cmd = exec.Command(cluster.Binary(t), "report", "user", "waste", "-P", "-n", "-t", "seconds", "start=now-1hours", "end=now")
	cmd.Env = append(os.Environ(), "LOOM_ADDR=unix://"+socket)
	if out, err = cmd.CombinedOutput(); err != nil {
		t.Fatalf("loom report user waste: %v\n%s", err, out)
	}
	wantLine = fmt.Sprintf("loom|%s|nlp|%d|%d|", bob.Name, int64(finished[bob.Name]+0.5), int64(used[bob.Name]+0.5))
	if !strings.Contains(string(out), "\n"+wantLine) && !strings.HasPrefix(string(out), wantLine) {
		t.Fatalf("loom report user waste printed\n%s\nwant a line starting %q", out, wantLine)
	}
	// loom report account usage: nlp is bob's account alone, so its line
	// and bob's under it carry his allocated and busy GPU-seconds, which
	// Prometheus's per-account sums equal. (vision's still grow with
	// alice's held job.)
	ok = eventually(30*time.Second, func() bool {
		alloc, _ := sample(`sum by (account) (max by (user, account) (loom_job_gpu_seconds_total))`)
		busy, _ := sample(`sum by (account) (max by (user, account) (loom_job_used_gpu_seconds_total))`)
		last = fmt.Sprintf("nlp's GPU-seconds %v allocated, %v used, want %.3f and %.3f", alloc, busy, finished[bob.Name], used[bob.Name])
		return math.Abs(alloc["nlp"]-finished[bob.Name]) < 0.01 && math.Abs(busy["nlp"]-used[bob.Name]) < 0.01
	})
	if !ok {
		t.Fatal(last)
	}
	cmd = exec.Command(cluster.Binary(t), "report", "account", "usage", "-P", "-n", "-t", "seconds", "start=now-1hours", "end=now")
	cmd.Env = append(os.Environ(), "LOOM_ADDR=unix://"+socket)
	if out, err = cmd.CombinedOutput(); err != nil {
		t.Fatalf("loom report account usage: %v\n%s", err, out)
	}
	figures := fmt.Sprintf("|%d|%d|", int64(finished[bob.Name]+0.5), int64(used[bob.Name]+0.5))
	for _, want := range []string{"loom|nlp|" + figures, "loom|nlp|" + bob.Name + figures} {
		if !strings.Contains(string(out), "\n"+want) && !strings.HasPrefix(string(out), want) {
			t.Fatalf("loom report account usage printed\n%s\nwant a line starting %q", out, want)
		}
	}
	ok = eventually(30*time.Second, func() bool {
		got, _ := sample(`sum by (state) (max by (state, partition) (loom_jobs_ended_total))`)
		last = fmt.Sprintf("jobs ended by state %v, want COMPLETED 2, FAILED 1, TIMEOUT 1", got)
		return got["COMPLETED"] == 2 && got["FAILED"] == 1 && got["TIMEOUT"] == 1 && len(got) == 3
	})
	if !ok {
		t.Fatal(last)
	}
	ok = eventually(30*time.Second, func() bool {
		got, _ := sample(`sum by (partition, state) (max by (state, partition) (loom_jobs_ended_total))`)
		want := map[string]float64{"batch/COMPLETED": 1, "batch/FAILED": 1, "debug/COMPLETED": 1, "debug/TIMEOUT": 1}
		last = fmt.Sprintf("jobs ended by partition and state %v, want %v", got, want)
		return maps.Equal(got, want)
	})
	if !ok {
		t.Fatal(last)
	}
	ok = eventually(30*time.Second, func() bool {
		got, _ := sample(`sum by (partition, reason) (max by (reason, partition) (loom_jobs_pending))`)
		last = fmt.Sprintf("pending jobs by partition and reason %v, want debug/JobHeldUser 1 alone", got)
		return got["debug/JobHeldUser"] == 1 && len(got) == 1
	})
	if !ok {
		t.Fatal(last)
	}
	// The scheduler placed the five jobs that ran, each once, and the FSM
	// refused none of its placements (one leader, no conflicts); its
	// cycles were timed.
	ok = eventually(30*time.Second, func() bool {
		placed, _ := sample(`sum(loom_scheduler_placements_total)`)
		rejected, _ := sample(`sum(loom_scheduler_plan_rejections_total)`)
		cycles, _ := sample(`sum(loom_scheduler_cycle_duration_seconds_count)`)
		last = fmt.Sprintf("placements %v, plan rejections %v, cycles %v; want 5, 0 and some", placed, rejected, cycles)
		return placed[""] == 5 && len(rejected) == 1 && rejected[""] == 0 && cycles[""] > 0
	})
	if !ok {
		t.Fatal(last)
	}
	// Both accounts used GPU time, so both fair-share factors are below 1
	// (and above 0). The server recomputes ended jobs' usage at most once a
	// minute (server/leader.go, fairShareCache), so a scrape taken before
	// the last jobs ended may show an account at 1 for up to that minute.
	ok = eventually(2*time.Minute, func() bool {
		r, err := promQuery(t, promAddr, `max by (account) (loom_account_fairshare_factor)`)
		got := map[string]float64{}
		for _, s := range r {
			var f float64
			fmt.Sscan(s["value"].([]any)[1].(string), &f)
			got[s["metric"].(map[string]any)["account"].(string)] = f
		}
		last = fmt.Sprintf("fair-share factors %v (%v), want vision and nlp between 0 and 1", got, err)
		for _, a := range []string{"vision", "nlp"} {
			if f, ok := got[a]; !ok || f <= 0 || f >= 1 {
				return false
			}
		}
		return true
	})
	if !ok {
		t.Fatal(last)
	}
	// Waits are recorded at each job's start: alice's three in batch,
	// bob's two that ran in debug.
	ok = eventually(30*time.Second, func() bool {
		got, _ := sample(`sum by (partition) (max by (partition, size, qos) (loom_job_wait_seconds_count))`)
		last = fmt.Sprintf("job starts by partition %v, want batch 3, debug 2", got)
		return maps.Equal(got, map[string]float64{"batch": 3, "debug": 2})
	})
	if !ok {
		t.Fatal(last)
	}
	// The per-GPU series name the holding job hpc_job (a job label would
	// be exported_job) and its user.
	ok = eventually(30*time.Second, func() bool {
		r, err := promQuery(t, promAddr, `count by (hpc_job, user) (DCGM_FI_DEV_GPU_UTIL{hpc_job!=""})`)
		last = fmt.Sprintf("GPUs by hpc_job and user = %v (%v), want job %d of %s holding 3", r, err, held.id, learner.Name)
		return err == nil && len(r) == 1 && r[0]["metric"].(map[string]any)["hpc_job"] == fmt.Sprint(held.id) &&
			r[0]["metric"].(map[string]any)["user"] == learner.Name && r[0]["value"].([]any)[1] == "3"
	})
	if !ok {
		t.Fatal(last)
	}
	if r, err := promQuery(t, promAddr, `count(DCGM_FI_DEV_GPU_UTIL{exported_job!=""})`); err != nil || len(r) != 0 {
		t.Fatalf("series with exported_job: %v (%v), want none", r, err)
	}

	// Every query of every shipped dashboard, and every recording rule,
	// returns data. Grafana's range variables become durations the test's
	// one-second scrapes fill.
	vars := strings.NewReplacer("$__rate_interval", "10s", "${__rate_interval}", "10s", "$__range", "10m", "${__range}", "10m", "$__interval", "5s")
	type query struct{ where, expr string }
	var queries []query
	files, err := filepath.Glob(filepath.Join(repoRoot(), "deploy", "grafana", "dashboards", "*.json"))
	if err != nil || len(files) < 5 {
		t.Fatalf("dashboards: %v (%v), want five", files, err)
	}
	type dashPanel struct {
		Title   string      `json:"title"`
		Panels  []dashPanel `json:"panels"`
		Targets []struct {
			Expr string `json:"expr"`
		} `json:"targets"`
	}
	var walk func(file string, ps []dashPanel)
	walk = func(file string, ps []dashPanel) {
		for _, p := range ps {
			walk(file, p.Panels)
			for _, tg := range p.Targets {
				queries = append(queries, query{fmt.Sprintf("%s: panel %q", filepath.Base(file), p.Title), vars.Replace(tg.Expr)})
			}
		}
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var dash struct {
			Panels []dashPanel `json:"panels"`
		}
		if err := json.Unmarshal(b, &dash); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		walk(f, dash.Panels)
	}
	for _, r := range recordingRules(t, promAddr) {
		queries = append(queries, query{"recording rule", r})
	}
	if len(queries) < 50 {
		t.Fatalf("%d queries, want the dashboards' full set", len(queries))
	}
	empty := map[query]error{}
	for _, q := range queries {
		empty[q] = nil
	}
	eventually(30*time.Second, func() bool {
		for q := range empty {
			r, err := promQuery(t, promAddr, q.expr)
			if err == nil && len(r) > 0 {
				delete(empty, q)
				continue
			}
			empty[q] = err
		}
		return len(empty) == 0
	})
	for q, err := range empty {
		t.Errorf("%s: %s returns no data (%v)", q.where, q.expr, err)
	}
	t.Logf("%d dashboard and recording-rule queries return data", len(queries))

	// And the headline figure comes right: 3 of 16 GPUs allocated, once a
	// scrape of the server (every second, like the agents') has seen it.
	ok = eventually(30*time.Second, func() bool {
		r, err := promQuery(t, promAddr, `max(loom_gpus{state="allocated"}) / sum(max by (state) (loom_gpus))`)
		last = fmt.Sprintf("allocated share = %v (%v), want 0.1875 (3 of 16 GPUs)", r, err)
		return err == nil && len(r) == 1 && r[0]["value"].([]any)[1] == "0.1875"
	})
	if !ok {
		t.Fatal(last)
	}
}

// eventually polls cond, at most every quarter second (each poll queries
// Prometheus), until it holds or the timeout passes, and says whether it
// held.
func eventually(timeout time.Duration, cond func() bool) bool {
	var next time.Time
	return harness.Wait(context.Background(), "a Prometheus query", timeout, func() bool {
		if time.Now().Before(next) {
			return false
		}
		next = time.Now().Add(250 * time.Millisecond)
		return cond()
	}) == nil
}

// recordingRules returns the names of the recording rules Prometheus has
// loaded, once each has been evaluated without error.
func recordingRules(t *testing.T, addr string) []string {
	t.Helper()
	var names []string
	var last string
	ok := eventually(30*time.Second, func() bool {
		rules, err := loadedRules(addr, "record")
		if err != nil {
			last = err.Error()
			return false
		}
		names = names[:0]
		for _, r := range rules {
			if r.Health != "ok" {
				last = fmt.Sprintf("recording rule %s: health %s %s", r.Name, r.Health, r.LastError)
				return false
			}
			names = append(names, r.Name)
		}
		last = "no recording rules loaded"
		return len(names) > 0
	})
	if !ok {
		t.Fatal(last)
	}
	return names
}
