//go:build e2e

// Package hw runs the hardware check, test/hw/run.sh, without hardware:
// against fake-nvidia-smi, which answers from the fixture files in
// testdata. It shows the script passes when Loom and nvidia-smi agree and
// fails, naming the difference, on each kind of planted mismatch. On a
// host with NVIDIA GPUs the script runs against the real nvidia-smi
// (docs/gpu.md).
package hw

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/loomhpc/loom/test/cluster"
)

func here() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(file)
}

// fixture copies testdata/consistent into a temporary directory and
// applies edit to it.
func fixture(t *testing.T, edit func(dir string)) string {
	t.Helper()
	dir := t.TempDir()
	src := filepath.Join(here(), "testdata", "consistent")
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if edit != nil {
		edit(dir)
	}
	return dir
}

// replace changes the first line of file that contains from, and fails the
// test when none does (a planted mismatch that plants nothing).
func replace(t *testing.T, dir, file, from, to string) {
	t.Helper()
	p := filepath.Join(dir, file)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), from) {
		t.Fatalf("%s: no %q to replace", file, from)
	}
	if err := os.WriteFile(p, []byte(strings.Replace(string(b), from, to, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
}

// failsWith says whether report has a FAIL line that contains want.
func failsWith(report, want string) bool {
	for _, l := range strings.Split(report, "\n") {
		if strings.HasPrefix(l, "  FAIL  ") && strings.Contains(l, want) {
			return true
		}
	}
	return false
}

// The fixtures' GPUs: simulated profile dgx-h100 as `loom gpu topo
// --profile dgx-h100` discovers it (UUIDs seeded with an empty host).
const (
	uuid3 = "GPU-3382d8f3-9299-f4a5-c200-ad6b87b3282c"
	uuid4 = "GPU-fb8d4920-65e1-3cae-f970-6693350b177e"
)

func TestHardwareCheckAgainstFakeNvidiaSMI(t *testing.T) {
	loom := cluster.Binary(t)
	tests := []struct {
		name string
		edit func(t *testing.T, dir string)
		job  bool   // run step 3: start a server and a simulated agent
		env  string // more settings: NAME=VALUE, space-separated
		want string // in the report; "" for a pass
	}{
		{name: "consistent"},
		{name: "UUID", want: "GPU 3 UUID: loom " + uuid3 + ", nvidia-smi GPU-00000000", edit: func(t *testing.T, d string) {
			replace(t, d, "query-inventory.csv", uuid3, "GPU-00000000")
			replace(t, d, "L.txt", uuid3, "GPU-00000000")
		}},
		{name: "memory", want: "GPU 4 memory: loom 81559 MiB, nvidia-smi 40960 MiB", edit: func(t *testing.T, d string) {
			replace(t, d, "query-inventory.csv", uuid4+", NVIDIA H100 80GB HBM3, 81559", uuid4+", NVIDIA H100 80GB HBM3, 40960")
		}},
		{name: "model", want: `GPU 4 model: loom "NVIDIA H100 80GB HBM3", nvidia-smi "NVIDIA H100 PCIe"`, edit: func(t *testing.T, d string) {
			replace(t, d, "query-inventory.csv", uuid4+", NVIDIA H100 80GB HBM3", uuid4+", NVIDIA H100 PCIe")
		}},
		{name: "a GPU missing", want: "GPU count: loom 8, nvidia-smi -L 7", edit: func(t *testing.T, d string) {
			replace(t, d, "L.txt", "GPU 4: NVIDIA H100 80GB HBM3 (UUID: "+uuid4+")\n", "")
			replace(t, d, "query-inventory.csv", "4, "+uuid4+", NVIDIA H100 80GB HBM3, 81559\n", "")
		}},
		{name: "an NVLink cell", want: "topo -m GPU0 to GPU1: loom NV18, nvidia-smi NV12", edit: func(t *testing.T, d string) {
			replace(t, d, "topo-m.txt", "GPU0\t X \tNV18", "GPU0\t X \tNV12")
		}},
		{name: "the recorded DGX H100 (12 NICs)", want: "topo -m GPU0 to NIC10: loom (none), nvidia-smi SYS", edit: func(t *testing.T, d string) {
			if err := os.Remove(filepath.Join(d, "topo-m.txt")); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(d, "topo-m.path"), []byte("gpu/testdata/dgx-h100-r535.txt\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "temperature", want: "temperature of " + uuid4 + ": loom 71 C, nvidia-smi 81 C (tolerance 3)", edit: func(t *testing.T, d string) {
			replace(t, d, "query-metrics.csv", uuid4+", 100, 79076, 71", uuid4+", 100, 79076, 81")
		}},
		{name: "utilisation", want: "utilisation of " + uuid4 + ": loom 100%, nvidia-smi 60% (tolerance 10)", edit: func(t *testing.T, d string) {
			replace(t, d, "query-metrics.csv", uuid4+", 100,", uuid4+", 60,")
		}},
		{name: "memory used", want: "memory used of " + uuid4 + ": loom 79012 MiB, nvidia-smi 1000 MiB", edit: func(t *testing.T, d string) {
			replace(t, d, "query-metrics.csv", uuid4+", 100, 79076,", uuid4+", 100, 1000,")
		}},
		{name: "simulated metrics", want: "metrics: " + uuid3 + " is simulated", edit: func(t *testing.T, d string) {
			replace(t, d, "metrics.txt", `loom_gpu_simulated{Hostname="gpuhost",UUID="`+uuid3+`",device="nvidia3",gpu="3",job="7",modelName="NVIDIA H100 80GB HBM3",user="alice"} 0`,
				`loom_gpu_simulated{Hostname="gpuhost",UUID="`+uuid3+`",device="nvidia3",gpu="3",job="7",modelName="NVIDIA H100 80GB HBM3",user="alice"} 1`)
		}},
		// The job step with real daemons: the agent's GPUs are simulated,
		// so the rank's GPU is not one nvidia-smi lists.
		{name: "job on a simulated agent", job: true, want: "is not among those nvidia-smi -L lists on this host"},
		// nvidia-smi answers after 3 s: the watchdog stops the check at
		// its 1-second limit, during the first call, and it fails rather
		// than run on (the call ends first, as the driver's would).
		{name: "over its time limit", env: "HW_DEADLINE_S=1 FAKE_NVIDIA_SMI_DELAY=3", want: "not done within 1 s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := fixture(t, func(d string) {
				if tt.edit != nil {
					tt.edit(t, d)
				}
			})
			cmd := exec.Command(filepath.Join(here(), "run.sh"))
			cmd.Dir = filepath.Join(here(), "..", "..")
			cmd.Env = append(os.Environ(),
				"LOOM="+loom,
				"NVIDIA_SMI="+filepath.Join(here(), "testdata", "fake-nvidia-smi"),
				"FAKE_NVIDIA_SMI_DIR="+dir,
				"HW_TOPO_ARGS=--profile dgx-h100",
			)
			cmd.Env = append(cmd.Env, strings.Fields(tt.env)...)
			if tt.job {
				cmd.Env = append(cmd.Env, "HW_AGENT_GPU_ARGS=--profile dgx-h100",
					fmt.Sprintf("HW_PORTS=%d %d %d %d", cluster.FreePort(t), cluster.FreePort(t), cluster.FreePort(t), cluster.FreePort(t)))
			} else {
				cmd.Env = append(cmd.Env, "HW_METRICS_URL=file://"+filepath.Join(dir, "metrics.txt"), "HW_SKIP_JOB=1")
			}
			out, err := cmd.CombinedOutput()
			report := string(out)
			if tt.want == "" {
				if err != nil || !strings.Contains(report, "PASS:") || strings.Contains(report, "FAIL") {
					t.Fatalf("run.sh on consistent fixtures: %v\n%s", err, report)
				}
				return
			}
			if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
				t.Fatalf("run.sh = %v, want exit status 1\n%s", err, report)
			}
			if !failsWith(report, tt.want) {
				t.Fatalf("run.sh report has no FAIL line with %q:\n%s", tt.want, report)
			}
		})
	}
}
