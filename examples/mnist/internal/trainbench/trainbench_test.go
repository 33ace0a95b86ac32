package trainbench

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"regexp"
	"testing"

	"github.com/loomhpc/loom/examples/mnist/internal/learner"
)

// TestMain lets the test binary be a learner rank, as bin/mnist is for
// `mnist bench`.
func TestMain(m *testing.M) {
	if os.Getenv("TRAINBENCH_TEST_WORKER") == "1" {
		if err := learner.Main(context.Background(), os.Args[1:], os.Getenv, os.Stdout); err != nil {
			fmt.Fprintf(os.Stderr, "mnist: %v\n", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	exe, err := os.Executable()
	if err != nil {
		panic(err)
	}
	os.Setenv("TRAINBENCH_TEST_WORKER", "1")
	workerCommand = func() (string, []string, error) { return exe, nil, nil }
	os.Exit(m.Run())
}

func TestBenchTrain(t *testing.T) {
	var out, errb bytes.Buffer
	if code := Main(context.Background(), []string{"-np", "1,2", "-steps", "20", "-hidden", "16"}, &out, &errb); code != 0 {
		t.Fatalf("Main = %d, want 0; stderr:\n%s", code, errb.String())
	}
	for _, re := range []string{
		`(?m)^bench=train model=mlp-16 batch_per_rank=32 steps=20 cpus=\d+$`,
		`(?m)^np=1 samples_per_s=\d+ samples_per_s_per_rank=\d+ global_batch=32 test_accuracy=0\.\d+ speedup=1\.00 scaling_efficiency=1\.00$`,
		`(?m)^np=2 samples_per_s=\d+ samples_per_s_per_rank=\d+ global_batch=64 test_accuracy=0\.\d+ speedup=\d+\.\d\d scaling_efficiency=\d+\.\d\d$`,
	} {
		if !regexp.MustCompile(re).MatchString(out.String()) {
			t.Errorf("output does not match %s:\n%s", re, out.String())
		}
	}
}

func TestBenchTrainBadNP(t *testing.T) {
	var out, errb bytes.Buffer
	if code := Main(context.Background(), []string{"-np", "1,x"}, &out, &errb); code != 2 {
		t.Errorf("Main(-np 1,x) = %d, want 2", code)
	}
}
