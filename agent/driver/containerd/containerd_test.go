package containerd

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"

	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/loomhpc/loom/agent/driver"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestNormalizeImage(t *testing.T) {
	tests := []struct{ in, want string }{
		{"ubuntu", "docker.io/library/ubuntu:latest"},
		{"docker://ubuntu:22.04", "docker.io/library/ubuntu:22.04"},
		{"nvcr.io#nvidia/pytorch:24.01-py3", "nvcr.io/nvidia/pytorch:24.01-py3"},
		{"loom.test/probe:1", "loom.test/probe:1"},
	}
	for _, tt := range tests {
		got, err := NormalizeImage(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("NormalizeImage(%q) = %q, %v, want %q", tt.in, got, err, tt.want)
		}
	}
	if _, err := NormalizeImage("Not/Valid"); err == nil {
		t.Errorf("NormalizeImage(%q) succeeded, want an error", "Not/Valid")
	}
}

func TestSanitize(t *testing.T) {
	for in, want := range map[string]string{"node1": "node1", "gpu-07.rack2": "gpu_07_rack2", "-x-": "x"} {
		if got := sanitize(in); got != want {
			t.Errorf("sanitize(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestOOMKilled(t *testing.T) {
	root := t.TempDir()
	old := cgroupRoot
	cgroupRoot = root
	defer func() { cgroupRoot = old }()
	write := func(rel, body string) {
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("memory/loom/v1-oom/memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n")
	write("memory/loom/v1-ok/memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n")
	write("loom/v2-oom/memory.events", "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n")
	for path, want := range map[string]bool{"/loom/v1-oom": true, "/loom/v1-ok": false, "/loom/v2-oom": true, "/loom/absent": false, "system.slice:loom:x": false} {
		if got := oomKilled(path); got != want {
			t.Errorf("oomKilled(%q) = %v, want %v", path, got, want)
		}
	}
}

func TestGPUOptsDevicesAndCDI(t *testing.T) {
	devDir, cdiDir := t.TempDir(), t.TempDir()
	haveDevices := os.Geteuid() == 0
	if haveDevices {
		// Stand-ins for the driver's device nodes: same major/minor as
		// /dev/null, named as NVIDIA's are. Only nvidia1 and nvidiactl exist.
		for _, name := range []string{"nvidia1", "nvidiactl"} {
			if err := syscall.Mknod(filepath.Join(devDir, name), syscall.S_IFCHR|0o666, 1<<8|3); err != nil {
				t.Fatal(err)
			}
		}
	}
	spec := `cdiVersion: "0.5.0"
kind: nvidia.com/gpu
devices:
- name: GPU-bbb
  containerEdits:
    env: ["CDI_SAW=GPU-bbb"]
- name: "3"
  containerEdits:
    env: ["CDI_SAW_INDEX=3"]
containerEdits:
  mounts:
  - hostPath: /usr/lib/libcuda.so.1
    containerPath: /usr/lib/libcuda.so.1
    options: [ro, nosuid, nodev, bind]
`
	if err := os.WriteFile(filepath.Join(cdiDir, "nvidia.yaml"), []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	d := &Driver{cfg: Config{DevDir: devDir, CDISpecDirs: []string{cdiDir}}}
	s := &oci.Spec{Process: &specs.Process{}, Linux: &specs.Linux{}}
	// GPU 1 is named by UUID in the CDI spec, GPU 3 only by index.
	for _, opt := range d.gpuOpts(driver.TaskSpec{GPUs: []string{"GPU-bbb", "GPU-ddd"}, GPUIndexes: []uint32{1, 3}}) {
		if err := opt(context.Background(), nil, &containers.Container{}, s); err != nil {
			t.Fatal(err)
		}
	}
	var devs []string
	for _, dev := range s.Linux.Devices {
		devs = append(devs, filepath.Base(dev.Path))
	}
	if want := []string{"nvidiactl", "nvidia1"}; haveDevices && !slices.Equal(devs, want) {
		t.Errorf("device nodes = %v, want %v (absent ones skipped)", devs, want)
	}
	for _, env := range []string{"CDI_SAW=GPU-bbb", "CDI_SAW_INDEX=3"} {
		if !slices.Contains(s.Process.Env, env) {
			t.Errorf("env %v lacks the CDI edit %s", s.Process.Env, env)
		}
	}
	if len(s.Mounts) != 1 || s.Mounts[0].Destination != "/usr/lib/libcuda.so.1" {
		t.Errorf("mounts = %+v, want the CDI spec's libcuda", s.Mounts)
	}

	// No GPUs: nothing added, whatever the node has.
	if opts := d.gpuOpts(driver.TaskSpec{}); len(opts) != 0 {
		t.Errorf("gpuOpts(no GPUs) = %d options, want none", len(opts))
	}
}
