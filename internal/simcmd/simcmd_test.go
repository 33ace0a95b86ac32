package simcmd

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/loomhpc/loom/scheduler"
)

func TestMainGenericCSV(t *testing.T) {
	dir := t.TempDir()
	trace := filepath.Join(dir, "t.csv")
	if err := os.WriteFile(trace, []byte("when,len,n,who\n2020-01-01 00:00:00,60,1,a\n2020-01-01 00:00:10,60,2,b\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	code := Main([]string{"--trace", trace, "--columns", "submit=when,duration=len,gpus=n,user=who", "--nodes", "1", "--out", filepath.Join(dir, "jobs.csv")}, &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	for _, want := range []string{"jobs=2\n", "avg_jct_s=60\n", "gpu_util="} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	b, err := os.ReadFile(filepath.Join(dir, "jobs.csv"))
	if err != nil || strings.Count(string(b), "\n") != 3 {
		t.Fatalf("jobs.csv: %v, %q", err, b)
	}
}

// --policy all replays every policy, prints each one's figures and a
// comparison, writes one CSV row per job and policy, and draws every
// policy in each of the plot's three panels.
func TestMainAllPoliciesPlot(t *testing.T) {
	dir := t.TempDir()
	trace := filepath.Join(dir, "t.csv")
	text := "submit,duration,gpus\n" +
		"1000000,20000,8\n" + // a long gang first
		"1010000,100,1\n1010100,100,2\n1010200,7200,4\n1010300,60,1\n"
	if err := os.WriteFile(trace, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	jobsCSV, plot := filepath.Join(dir, "jobs.csv"), filepath.Join(dir, "p.svg")
	var out, errb bytes.Buffer
	code := Main([]string{"--trace", trace, "--columns", "submit=submit,duration=duration,gpus=gpus", "--nodes", "1",
		"--policy", "all", "--out", jobsCSV, "--plot", plot}, &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	o := out.String()
	for _, want := range []string{"policy=fifo\n", "policy=sjf\ntime_limit_model=exact\n", "policy=loom\n", "policy=las\n",
		"policy=las-limit\n", "policy=gittins\n", "class=2-8 jobs=3 ", "preemptions_per_job=", "/sjf", "p99_queue_s(2-8)"} {
		if !strings.Contains(o, want) {
			t.Errorf("output lacks %q:\n%s", want, o)
		}
	}
	b, err := os.ReadFile(jobsCSV)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != 1+5*6 || !strings.HasSuffix(lines[0], ",preemptions,size_class,policy") || !strings.HasSuffix(lines[len(lines)-1], ",gittins") {
		t.Errorf("jobs.csv: %d lines, header %q, last %q; want 31, with preemptions, size_class and policy", len(lines), lines[0], lines[len(lines)-1])
	}
	svg, err := os.ReadFile(plot)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(svg), "<polyline"); !strings.HasPrefix(string(svg), "<svg") || n != 3*6 {
		t.Errorf("plot: %d polylines, want 3 panels × 6 policies", n)
	}
}

func TestParsePoliciesErrors(t *testing.T) {
	for _, bad := range []string{"lifo", "sjf@exakt", "fifo,,las"} {
		if _, err := parsePolicies(bad, "roundup", nil); err == nil {
			t.Errorf("parsePolicies(%q) = nil error, want one", bad)
		}
	}
}

func TestGittinsMarginRefused(t *testing.T) {
	f := lasFlags{margin: 0.5, within: "fifo", service: "gpu-time"}
	if _, err := lasOverrides(map[string]bool{"gittins-margin": true}, f); err == nil || !strings.Contains(err.Error(), "--gittins-margin") {
		t.Errorf("lasOverrides(--gittins-margin=0.5) error = %v, want one naming the flag", err)
	}
	f.margin = 2
	apply, err := lasOverrides(map[string]bool{"gittins-margin": true}, f)
	if err != nil {
		t.Fatal(err)
	}
	if c := apply(scheduler.LASConfig{}); c.GittinsMargin != 2 {
		t.Errorf("--gittins-margin=2: GittinsMargin = %g, want 2", c.GittinsMargin)
	}
}
