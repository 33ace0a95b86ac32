package containerd

import (
	"os"
	"path/filepath"
	"testing"
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
