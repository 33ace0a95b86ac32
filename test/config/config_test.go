//go:build e2e

// Package config runs the cluster configuration of loom.toml on a real
// server process: QoS defined in [[qos]] and changed by `loom operator
// reload` preempt as configured; SIGHUP reloads too; a file that fails
// validation is refused with its file and line and changes nothing.
package config

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/loomhpc/loom/api"
	"github.com/loomhpc/loom/api/apirpc"
	"github.com/loomhpc/loom/internal/harness"
	"github.com/loomhpc/loom/test/cluster"
)

// noPreempt defines the QoS; high may not preempt yet.
const noPreempt = `[scheduler]
default_time = "10:00"

[[qos]]
name = "low"
priority = 1

[[qos]]
name = "high"
priority = 100
`

const withPreempt = noPreempt + `preempt = ["low"]
`

func TestQOSPreemptionFromConfigAndReload(t *testing.T) {
	logs := t.TempDir()
	work := cluster.OpenDir(t, "loom-config-")
	conf := filepath.Join(logs, "loom.toml")
	write := func(text string) {
		t.Helper()
		if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(noPreempt)
	srv := cluster.StartServer(t, logs, "server", "--config", conf)
	cluster.StartAgent(t, logs, "node1", "pcie-4", 30000, srv)
	jobs, nodes := cluster.Client(t, srv.Client())
	conn, err := harness.Dial(srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	op := apirpc.NewOperatorClient(conn)
	config := func() *api.ClusterConfig {
		r, err := op.GetConfig(cluster.Ctx(t), &api.GetConfigRequest{})
		if err != nil {
			return nil
		}
		return r.Config
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("--- server log (tail):\n%s", srv.Tail())
		}
	})
	cluster.WaitFor(t, "the agent to register and the file to be replicated", 30*time.Second, func() bool {
		r, err := nodes.ListNodes(cluster.Ctx(t), &api.ListNodesRequest{})
		return err == nil && len(r.Nodes) == 1 && len(config().GetQos()) == 2
	})
	run := func(binary string, args ...string) (string, error) {
		cmd := exec.Command(binary, args...)
		cmd.Env = append(os.Environ(), "LOOM_ADDR="+srv.Client())
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	loom := func(args ...string) (string, error) { return run(cluster.Binary(t), args...) }
	env := map[string]string{"PATH": os.Getenv("PATH")}
	submit := func(token, qos string, gpus uint32) uint64 {
		spec := &api.JobSpec{Name: token, Qos: qos, NodesMin: 1, GpusPerNode: gpus, TimeLimitS: 600,
			WorkingDir: work, Env: env, Script: "#!/bin/sh\nsleep 300\n"}
		if qos == "high" {
			spec.Script = "#!/bin/sh\necho high ran\n"
		}
		return cluster.SubmitRetrying(t, jobs, &api.SubmitRequest{Spec: spec, IdempotencyToken: token}, 20*time.Second)
	}
	get := func(id uint64) *api.Job { return cluster.Job(t, jobs, id) }

	low := submit("low", "low", 4)
	cluster.WaitFor(t, "the low-QoS job to hold every GPU", 60*time.Second, func() bool {
		return get(low).GetState() == api.JobState_RUNNING
	})
	high := submit("high", "high", 1)
	// Without preempt, high waits for resources (the scheduler has
	// planned it at least once: it carries a reason).
	cluster.WaitFor(t, "the high-QoS job to wait for resources", 30*time.Second, func() bool {
		j := get(high)
		return j.GetState() == api.JobState_PENDING && j.GetReason() == "Resources"
	})
	if j := get(low); j.State != api.JobState_RUNNING || j.PreemptCount != 0 {
		t.Fatalf("low job %s, preempted %d times, before high may preempt it", j.State, j.PreemptCount)
	}

	// A file that fails validation is refused with its file and line, and
	// the configuration in force stays.
	before := config().GetSha256()
	write(withPreempt + "\n[[qos]]\nname = \"urgent\"\npreempt = [\"nobody\"]\n")
	out, err := loom("operator", "reload")
	if err == nil || !strings.Contains(out, conf+`:15: [[qos]] "urgent" preempt: unknown QoS "nobody"`) {
		t.Fatalf("loom operator reload of an invalid file: %v\n%s\nwant a failure naming %s:15", err, out, conf)
	}
	out, err = loom("config", "check", conf)
	if err == nil || !strings.Contains(out, conf+`:15:`) {
		t.Errorf("loom config check of an invalid file: %v\n%s", err, out)
	}
	if got := config().GetSha256(); got != before {
		t.Fatalf("a refused reload changed the configuration: %s -> %s", before, got)
	}

	// Now high may preempt low: the reload prints what changed, and the
	// low job is requeued for the high one.
	write(withPreempt)
	out, err = loom("operator", "reload")
	if err != nil || !strings.Contains(out, "QOS[high]: Priority=100 Preempt=(null)") || !strings.Contains(out, "-> Priority=100 Preempt=low") {
		t.Fatalf("loom operator reload: %v\n%s\nwant the QOS[high] change", err, out)
	}
	var h *api.Job
	cluster.WaitFor(t, "the high-QoS job to complete", 90*time.Second, func() bool {
		h = get(high)
		return h.State.Terminal()
	})
	if h.State != api.JobState_COMPLETED {
		t.Fatalf("high job %s (%s), want COMPLETED", h.State, h.Reason)
	}
	if l := get(low); l.PreemptCount != 1 {
		t.Fatalf("low job preempted %d times, want once (state %s)", l.PreemptCount, l.State)
	}
	if out, err := loom("operator", "reload"); err != nil || !strings.HasPrefix(out, "unchanged") {
		t.Errorf("reload of the same file: %v\n%s\nwant unchanged", err, out)
	}

	// SIGHUP reloads as well; scontrol show config shows the new value.
	write(strings.Replace(withPreempt, `"10:00"`, `"20:00"`, 1))
	if err := srv.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	cluster.WaitFor(t, "SIGHUP to reload default_time", 30*time.Second, func() bool {
		return config().GetScheduler().GetDefaultTimeS() == 1200
	})
	out, err = run(filepath.Join(filepath.Dir(cluster.Binary(t)), "scontrol"), "show", "config")
	if err != nil || !strings.Contains(out, "DefaultTime") || !strings.Contains(out, "= 20:00") {
		t.Errorf("scontrol show config: %v\n%s\nwant DefaultTime = 20:00", err, out)
	}
}
