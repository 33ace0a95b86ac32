package e2e

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/loomhpc/loom/cli"
)

// slurmCommands are the commands the benchmark runs; the test binary
// plays them when started under their names.
var slurmCommands = []string{"sbatch", "squeue", "sacct"}

func TestMain(m *testing.M) {
	if name := filepath.Base(os.Args[0]); slices.Contains(slurmCommands, name) {
		os.Exit(cli.Run(context.Background(), name, os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// TestRunPrintsFigures runs the whole benchmark tiny and checks that
// every key is printed with a sane value.
func TestRunPrintsFigures(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := t.TempDir()
	for _, c := range slurmCommands {
		if err := os.Symlink(self, filepath.Join(bin, c)); err != nil {
			t.Fatal(err)
		}
	}
	var out, log bytes.Buffer
	o := Options{Agents: 4, Jobs: 8, Clients: 2, Gang: 4, Array: 6, Queue: 40, Repeats: 1, Bin: bin, Log: &log}
	if err := Run(context.Background(), o, &out); err != nil {
		t.Fatalf("Run: %v\nlog:\n%s", err, log.String())
	}
	got := map[string]float64{}
	for _, line := range strings.Split(out.String(), "\n") {
		k, v, ok := strings.Cut(line, "=")
		if !ok || strings.Contains(line, " ") {
			continue
		}
		f, err := strconv.ParseFloat(v, 64)
		if err != nil {
			t.Errorf("%s: value %q is not a number", k, v)
		}
		got[k] = f
	}
	counts := map[string]float64{"jobs": 8, "gang4_jobs": 2, "array_jobs": 6, "queue_jobs": 40}
	for k, want := range counts {
		if got[k] != want {
			t.Errorf("%s = %v, want %v", k, got[k], want)
		}
	}
	for _, prefix := range []string{"", "gang4_", "array_"} {
		for _, k := range []string{"submit_p50_ms", "submit_p99_ms", "start_p50_ms", "start_p99_ms", "jobs_per_s"} {
			v, ok := got[prefix+k]
			switch {
			case !ok:
				t.Errorf("%s%s not printed", prefix, k)
			case v < 0:
				t.Errorf("%s%s = %v, want >= 0", prefix, k, v)
			}
		}
		if got[prefix+"submit_p50_ms"] <= 0 || got[prefix+"jobs_per_s"] <= 0 {
			t.Errorf("%ssubmit_p50_ms = %v, %sjobs_per_s = %v: want both > 0", prefix, got[prefix+"submit_p50_ms"], prefix, got[prefix+"jobs_per_s"])
		}
		if got[prefix+"start_p99_ms"] < got[prefix+"start_p50_ms"] {
			t.Errorf("%sstart_p99_ms = %v < start_p50_ms = %v", prefix, got[prefix+"start_p99_ms"], got[prefix+"start_p50_ms"])
		}
		for _, st := range stages {
			p50, ok50 := got[prefix+st.key+"_p50_ms"]
			p99, ok99 := got[prefix+st.key+"_p99_ms"]
			switch {
			case !ok50 || !ok99:
				t.Errorf("%s%s_p50_ms or _p99_ms not printed", prefix, st.key)
			case p50 < 0 || p99 < p50:
				t.Errorf("%s%s: p50 %v, p99 %v: want 0 <= p50 <= p99", prefix, st.key, p50, p99)
			}
		}
	}
	for _, queue := range []string{"10k", "empty"} {
		for _, cmd := range []string{"squeue", "sacct", "sbatch"} {
			for _, k := range []string{cmd + "_" + queue + "_ms", cmd + "_" + queue + "_cpu_ms"} {
				if got[k] <= 0 {
					t.Errorf("%s = %v, want > 0", k, got[k])
				}
			}
		}
	}
}

func TestOptionsCheck(t *testing.T) {
	ok := Options{Agents: 4, Jobs: 8, Clients: 1, Gang: 4, Array: 10, Queue: 10, Repeats: 1}
	if err := ok.check(); err != nil {
		t.Fatalf("check(%+v) = %v, want nil", ok, err)
	}
	for _, tc := range []struct {
		name   string
		change func(*Options)
		field  string
	}{
		{"no agents", func(o *Options) { o.Agents = 0 }, "--agents"},
		{"gang wider than the cluster", func(o *Options) { o.Gang = 5 }, "--gang"},
		{"array too large", func(o *Options) { o.Array = maxArray + 1 }, "--array"},
		{"no repeats", func(o *Options) { o.Repeats = 0 }, "--repeats"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := ok
			tc.change(&o)
			err := o.check()
			if err == nil || !strings.Contains(err.Error(), tc.field) {
				t.Errorf("check() = %v, want an error naming %s", err, tc.field)
			}
		})
	}
}
