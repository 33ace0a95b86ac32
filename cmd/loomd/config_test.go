package main

import (
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/loomhpc/loom/scheduler"
)

func testFlags() (*flag.FlagSet, *string, *int, *bool, *time.Duration, *string) {
	fs := flag.NewFlagSet("loom agent", flag.ContinueOnError)
	fs.SetOutput(new(strings.Builder))
	servers := fs.String("servers", "127.0.0.1:7070", "")
	port := fs.Int("port", 1, "")
	root := fs.Bool("allow-root", false, "")
	grace := fs.Duration("kill-grace", time.Second, "")
	parts := fs.String("partitions", "", "")
	return fs, servers, port, root, grace, parts
}

func writeConfig(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "loom.toml")
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// Settings from the file become the flags' values; the command line wins.
func TestConfigSetsFlagsAndCommandLineWins(t *testing.T) {
	path := writeConfig(t, `
# agents of rack 4
[server]
name = "ignored by agents"

[agent]
servers = ["ctl1:7070", "ctl2:7070"]
allow_root = true
kill-grace = "45s"
partitions = ["gpu", "debug"]
port = 9
`)
	fs, servers, port, root, grace, parts := testFlags()
	args := []string{"--config", path, "--port", "12"}
	if err := applyConfig(fs, "agent", args); err != nil {
		t.Fatal(err)
	}
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	if *servers != "ctl1:7070,ctl2:7070" || !*root || *grace != 45*time.Second || *parts != "gpu,debug" {
		t.Fatalf("servers=%q allow-root=%v kill-grace=%v partitions=%q", *servers, *root, *grace, *parts)
	}
	if *port != 12 {
		t.Fatalf("port = %d, want the command line's 12 over the file's 9", *port)
	}
}

// Bad files fail with the file, the line and what is wrong; the daemon
// then exits, so settings applied before the bad one never take effect.
func TestConfigErrorsNameTheLine(t *testing.T) {
	for _, c := range []struct{ name, text, want string }{
		{"unknown setting", "[agent]\nservers = \"a:1\"\nserver = \"typo\"\n", `:3: [agent] unknown setting "server"`},
		{"bad value", "[agent]\n\nkill_grace = \"soon\"\n", `:3: [agent] kill_grace: invalid value "soon"`},
		{"wrong type", "[agent]\nport = \"nine\"\n", `:2: [agent] port:`},
		{"table value", "[agent]\nport = { a = 1 }\n", `:2: [agent] port: a map[string]interface {} cannot set a flag`},
		{"syntax", "[agent]\nport = = 3\n", `:2: `},
		{"outside a table", "servers = \"a:1\"\n[agent]\n", `:1: "servers": settings belong in a [server], [agent], [scheduler], [cli], [[qos]], [[partition]] or [topology] table`},
		{"unknown table", "[agnet]\nport = 3\n", `:1: "agnet": settings belong in a [server], [agent], [scheduler], [cli], [[qos]], [[partition]] or [topology] table`},
	} {
		path := writeConfig(t, c.text)
		fs, _, _, _, _, _ := testFlags()
		err := applyConfig(fs, "agent", []string{"--config=" + path})
		if err == nil || !strings.Contains(err.Error(), path+c.want) {
			t.Errorf("%s: err = %v, want it to contain %q", c.name, err, path+c.want)
		}
	}
}

// Without --config, $LOOM_CONFIG names the file; a missing explicit file
// is an error, not silently ignored.
func TestConfigPathFromEnvAndMissingFile(t *testing.T) {
	path := writeConfig(t, "[agent]\nport = 7\n")
	t.Setenv("LOOM_CONFIG", path)
	fs, _, port, _, _, _ := testFlags()
	if err := applyConfig(fs, "agent", nil); err != nil {
		t.Fatal(err)
	}
	if *port != 7 {
		t.Fatalf("port = %d, want 7 from $LOOM_CONFIG", *port)
	}
	fs, _, _, _, _, _ = testFlags()
	if err := applyConfig(fs, "agent", []string{"--config", "/nonexistent/loom.toml"}); err == nil {
		t.Fatal("a missing --config file was accepted")
	}
}

// The sample in deploy/ is valid against the daemons' real flags.
func TestSampleConfigIsValid(t *testing.T) {
	if rc := configCheckMain(t.Context(), []string{filepath.Join("..", "..", "deploy", "loom.toml")}, testStdio(t)); rc != 0 {
		t.Fatalf("loom config check deploy/loom.toml exited %d", rc)
	}
	bad := writeConfig(t, "[agent]\ndriver = \"docker\"\n")
	if rc := configCheckMain(t.Context(), []string{bad}, testStdio(t)); rc == 0 {
		t.Fatal("a file naming an unknown driver passed the check")
	}
}

// [scheduler] sets loom server's --scheduler-* flags; a bad policy or
// threshold list is refused naming the key and its line.
func TestSchedulerSection(t *testing.T) {
	newFlags := func() (*flag.FlagSet, func() scheduler.Config) {
		fs := flag.NewFlagSet("loom server", flag.ContinueOnError)
		fs.SetOutput(new(strings.Builder))
		return fs, schedulerFlags(fs)
	}
	path := writeConfig(t, `
[scheduler]
policy = "las"
las_thresholds = [600, 7200]
las_min_run = "2m"
las_promote_factor = 4
las_within = "limit"
`)
	fs, build := newFlags()
	args := []string{"--config", path}
	if err := applyConfig(fs, "server", args); err != nil {
		t.Fatal(err)
	}
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	c := build()
	if c.Order != scheduler.OrderLeastAttained || !slices.Equal(c.LAS.Thresholds, []float64{600, 7200}) ||
		c.LAS.MinRun != 2*time.Minute || c.LAS.PromoteFactor != 4 || c.LAS.Preempt != scheduler.PreemptRequeueable ||
		c.LAS.WithinQueue != scheduler.QueueShortestLimit {
		t.Fatalf("scheduler config = %+v", c)
	}
	// Agents ignore [scheduler].
	afs, _, _, _, _, _ := testFlags()
	if err := applyConfig(afs, "agent", args); err != nil {
		t.Fatalf("agent with a [scheduler] table: %v", err)
	}
	fs, build = newFlags()
	if err := fs.Parse(nil); err != nil || build().Order != scheduler.OrderMultifactor {
		t.Fatalf("default policy = %v (%v), want multifactor", build().Order, err)
	}
	for _, c := range []struct{ text, want string }{
		{"[scheduler]\npolicy = \"lsa\"\n", `:2: [scheduler] policy: invalid value "lsa": unknown policy (want multifactor, fifo, las or gittins)`},
		{"[scheduler]\npolicy = \"las\"\nlas_thresholds = [7200, 600]\n", `:3: [scheduler] las_thresholds: invalid value "7200,600"`},
		{"[scheduler]\npolicies = \"las\"\n", `:2: [scheduler] unknown setting "policies"`},
	} {
		fs, _ := newFlags()
		err := applyConfig(fs, "server", []string{"--config=" + writeConfig(t, c.text)})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: err = %v, want it to contain %q", c.text, err, c.want)
		}
	}
}

// loom config check validates the cluster tables and names the line of a
// mistake; [scheduler] keys that are not flags are left to them, and a
// server given a bad file does not start.
func TestConfigCheckCoversTheClusterTables(t *testing.T) {
	good := writeConfig(t, "[server]\ntls = false\n[agent]\ntls = false\n\n[scheduler]\ndefault_time = \"1:00:00\"\nweight_qos = 5000\n\n[[qos]]\nname = \"low\"\n[[qos]]\nname = \"high\"\npreempt = [\"low\"]\n\n[[partition]]\nname = \"gpu\"\ndefault = true\n")
	if code, out, errb := runLoom("config", "check", good); code != 0 {
		t.Fatalf("config check of a valid file = %d\n%s%s", code, out, errb)
	}
	bad := writeConfig(t, "[server]\ntls = false\n\n[[qos]]\nname = \"high\"\npreempt = [\"low\"]\n")
	code, _, errb := runLoom("config", "check", bad)
	if want := bad + `:6: [[qos]] "high" preempt: unknown QoS "low"`; code == 0 || !strings.Contains(errb, want) {
		t.Errorf("config check of a bad file = %d, %q; want a failure containing %q", code, errb, want)
	}
	code, _, errb = runLoom("server", "--config", bad, "--data-dir", t.TempDir())
	if code != 2 || !strings.Contains(errb, bad+":6:") {
		t.Errorf("loom server with a bad file = %d, %q; want exit 2 naming %s:6", code, errb, bad)
	}
	code, _, errb = runLoom("server", "--config", good, "--data-dir", t.TempDir(), "--scheduler-policy", "las", "--scheduler-las-within", "sideways")
	if code != 2 || !strings.Contains(errb, "sideways") {
		t.Errorf("loom server with a bad --scheduler-las-within = %d, %q; want exit 2", code, errb)
	}
}
