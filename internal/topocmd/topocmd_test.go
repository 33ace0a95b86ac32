package topocmd

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/loomhpc/loom/gpu/probe"
)

func run(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := TopoMain(args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestTopoMain(t *testing.T) {
	golden, err := os.ReadFile("../../gpu/testdata/dgx1-v100.golden")
	if err != nil {
		t.Fatal(err)
	}
	saved := filepath.Join(t.TempDir(), "topo.txt")
	if err := os.WriteFile(saved, golden, 0o600); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(t.TempDir(), "bad.txt")
	if err := os.WriteFile(bad, []byte("\tGPU0\tGPU1\nGPU0\t X \tNV2\nGPU1\tNV3\t X \n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		args   []string
		code   int
		stdout string // substring; "=golden" for the DGX-1V file exactly
		stderr string
	}{
		{[]string{"--profile", "dgx1-v100"}, 0, "=golden", ""},
		{[]string{"--from", saved}, 0, "=golden", ""},
		{[]string{"--profile", "dgx-h100"}, 0, "GPU0\t X \tNV18", ""},
		{[]string{"--profile", "flat-2"}, 0, "GPU0\t X \tPHB", ""},
		{[]string{"--profile", "flat-2", "--json"}, 0, `"count": 2`, ""},
		{[]string{"--help"}, 0, "Usage: loom gpu topo", ""},
		{[]string{"--list"}, 0, "dgx1-v100", ""},
		{[]string{"--profile", "nope"}, 1, "", "unknown profile"},
		{[]string{"--from", bad}, 1, "", "line 3, column 6: GPU1 to GPU0 is NV3, but GPU0 to GPU1 (line 2) is NV2"},
		{[]string{"--from", "/does/not/exist"}, 1, "", "no such file"},
		{[]string{"--profile", "dgx-h100", "--from", saved}, 2, "", "use one of"},
		{[]string{"--bogus"}, 2, "", "flag provided but not defined"},
		{[]string{"extra"}, 2, "", `unexpected argument "extra"`},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			code, out, errs := run(tt.args...)
			if code != tt.code {
				t.Errorf("TopoMain(%q) = %d, want %d (stderr %q)", tt.args, code, tt.code, errs)
			}
			if tt.stdout == "=golden" {
				if out != string(golden) {
					t.Errorf("TopoMain(%q) printed\n%s\nwant the DGX-1V golden matrix", tt.args, out)
				}
			} else if !strings.Contains(out, tt.stdout) {
				t.Errorf("TopoMain(%q) stdout = %q, want it to contain %q", tt.args, out, tt.stdout)
			}
			if !strings.Contains(errs, tt.stderr) {
				t.Errorf("TopoMain(%q) stderr = %q, want it to contain %q", tt.args, errs, tt.stderr)
			}
		})
	}
}

// Without a driver, the default (NVML) fails with a hint, not a crash.
func TestTopoMainNoNVML(t *testing.T) {
	if _, err := probe.ReadNVML(t.Context()); err == nil {
		t.Skip("NVML is present")
	}
	code, _, errs := run()
	if code != 1 || !strings.Contains(errs, "NVML unavailable") || !strings.Contains(errs, "--profile") {
		t.Errorf("TopoMain() = %d, stderr %q; want 1 and a hint to use --profile", code, errs)
	}
}

// --json prints the same discovery as the matrix, in a form a script reads.
func TestTopoMainJSON(t *testing.T) {
	code, out, errs := run("--profile", "dgx-h100", "--json")
	if code != 0 {
		t.Fatalf("TopoMain(--json) = %d, stderr %q", code, errs)
	}
	var d discovery
	if err := json.Unmarshal([]byte(out), &d); err != nil {
		t.Fatalf("TopoMain(--json) printed %q: %v", out, err)
	}
	if d.Count != 8 || len(d.GPUs) != 8 || d.GPUs[3].Index != 3 || !strings.HasPrefix(d.GPUs[3].UUID, "GPU-") ||
		d.GPUs[3].Name != "NVIDIA H100 80GB HBM3" || d.GPUs[3].MemoryMiB == 0 {
		t.Errorf("TopoMain(--json) GPUs = %d %+v, want 8 H100s with UUIDs and memory", d.Count, d.GPUs)
	}
	n := len(d.GPUs) + len(d.NICs)
	if len(d.Devices) != n || len(d.Links) != n || d.Devices[8] != "NIC0" {
		t.Fatalf("TopoMain(--json) devices %v and %d rows, want %d GPUs then NICs", d.Devices, len(d.Links), n)
	}
	if d.Links[0][0] != "X" || d.Links[0][1] != "NV18" || d.Links[0][8] != "PXB" {
		t.Errorf("TopoMain(--json) row 0 = %v, want X NV18 … PXB to NIC0", d.Links[0])
	}
}
