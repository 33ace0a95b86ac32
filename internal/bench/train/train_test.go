package train

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeLearner puts an mnist script on PATH that prints its arguments and
// exits with status 3.
func fakeLearner(t *testing.T) {
	dir := t.TempDir()
	script := "#!/bin/sh\necho \"args: $*\"\necho oops >&2\nexit 3\n"
	if err := os.WriteFile(filepath.Join(dir, Learner), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir)
}

func TestMainRunsTheLearnersBench(t *testing.T) {
	fakeLearner(t)
	var out, errb bytes.Buffer
	if code := Main(context.Background(), []string{"-np", "1,2", "-steps", "20"}, &out, &errb); code != 3 {
		t.Errorf("Main = %d, want the learner's status 3", code)
	}
	if got, want := out.String(), "args: bench -np 1,2 -steps 20\n"; got != want {
		t.Errorf("stdout = %q, want %q", got, want)
	}
	if got, want := errb.String(), "oops\n"; got != want {
		t.Errorf("stderr = %q, want %q", got, want)
	}
}

func TestMainWithoutLearner(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	var out, errb bytes.Buffer
	if code := Main(context.Background(), nil, &out, &errb); code != 1 {
		t.Errorf("Main without mnist = %d, want 1", code)
	}
	if !strings.Contains(errb.String(), `loom bench train: the MNIST example binary "mnist" is neither in `) ||
		!strings.Contains(errb.String(), "make build") {
		t.Errorf("Main without mnist: stderr = %q, want where it looked and how to build it", errb.String())
	}
}
