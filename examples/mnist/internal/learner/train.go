// Package learner is the MNIST learner of examples/mnist: a two-layer
// perceptron written out by hand (forward and backward), trained with
// momentum SGD, data-parallel over netcoll.
//
// Data parallelism follows torch's DistributedDataParallel with a
// DistributedSampler: every epoch one seeded permutation of the training
// set is drawn on every rank; the global batch of step s is its slice
// [s·B, (s+1)·B) with B = world × batch per rank, and rank r takes every
// world-th example of it starting at r. Each rank sums its examples'
// gradients, one AllReduce sums them over ranks, and every rank divides
// by B and applies the same update. So N ranks with batch b take exactly
// the steps of one rank with batch N·b, up to the order of float64
// additions.
package learner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"time"

	"github.com/loomhpc/loom/netcoll"
)

// Config is one training run.
type Config struct {
	Hidden       int     // hidden units
	BatchPerRank int     // examples per rank per step
	Epochs       int     // passes over the training set; Steps overrides
	Steps        int     // total optimizer steps when > 0
	LR           float64 // learning rate
	Momentum     float64 // heavy-ball momentum
	Seed         uint64  // initial weights and shuffling

	// CheckpointDir receives State every CheckpointEvery steps and at the
	// end, and a run resumes from it when it holds one. Empty disables
	// checkpoints.
	CheckpointDir   string
	CheckpointEvery int
	// CheckpointNow, when set, makes the run checkpoint after the step in
	// progress whenever it receives: the learner's answer to the --signal
	// a job gets before its time limit or its preemption.
	CheckpointNow <-chan struct{}
	// ResultDir receives the final model and metrics.json. Empty skips
	// them.
	ResultDir string

	LogEvery int       // steps between progress lines
	Log      io.Writer // progress lines (rank 0 only); nil discards

	// OnStep, when set, is called on every rank after each step. Tests
	// stop a run part-way with it.
	OnStep func(step int)
}

// DefaultConfig is the configuration of `make run` (4 ranks, global batch
// 128): about 97.9% test accuracy in four epochs.
func DefaultConfig() Config {
	return Config{
		Hidden:          256,
		BatchPerRank:    32,
		Epochs:          4,
		LR:              0.05,
		Momentum:        0.9,
		Seed:            1,
		CheckpointEvery: 200,
		LogEvery:        100,
	}
}

// Result is what a run reports (and writes to metrics.json).
type Result struct {
	WorldSize     int     `json:"world_size"`
	BatchPerRank  int     `json:"batch_per_rank"`
	GlobalBatch   int     `json:"global_batch"`
	Steps         int     `json:"steps"`
	Epochs        float64 `json:"epochs"`
	ResumedFrom   int     `json:"resumed_from_step"`
	TestAccuracy  float64 `json:"test_accuracy"`
	TestLoss      float64 `json:"test_loss"`
	TrainLoss     float64 `json:"train_loss"`      // mean over the last logging window
	SamplesPerSec float64 `json:"samples_per_sec"` // global, training steps only
	TrainSeconds  float64 `json:"train_seconds"`   // this process's training steps

	// Model is the final model.
	Model *MLP `json:"-"`
}

// Train runs cfg on data. comm is the job's communicator, or nil for a
// single process. Every rank returns the same Result and model.
func Train(ctx context.Context, comm *netcoll.Comm, data *Data, cfg Config) (*Result, error) {
	world, rank := 1, 0
	if comm != nil {
		world, rank = comm.Size(), comm.Rank()
	}
	logw := cfg.Log
	if logw == nil || rank != 0 {
		logw = io.Discard
	}
	if cfg.Hidden <= 0 || cfg.BatchPerRank <= 0 {
		return nil, fmt.Errorf("mnist: hidden units (%d) and batch per rank (%d) must be positive", cfg.Hidden, cfg.BatchPerRank)
	}
	B := cfg.BatchPerRank * world
	n := data.Train.Len()
	perEpoch := n / B // the last partial batch of an epoch is dropped
	if perEpoch == 0 {
		return nil, fmt.Errorf("mnist: global batch %d is larger than the training set (%d)", B, n)
	}
	total := cfg.Steps
	if total <= 0 {
		total = cfg.Epochs * perEpoch
	}

	pcg := rand.NewPCG(cfg.Seed, 0x6d6e697374) // "mnist"
	shuffle := rand.New(pcg)
	model := NewMLP(cfg.Hidden, newInitRNG(cfg.Seed))
	velocity := make([]float64, len(model.Params))

	st, err := restore(ctx, comm, cfg, rank)
	if err != nil {
		return nil, err
	}
	step := 0
	res := &Result{WorldSize: world, BatchPerRank: cfg.BatchPerRank, GlobalBatch: B, Model: model}
	if st != nil {
		if st.Hidden != cfg.Hidden {
			return nil, fmt.Errorf("mnist: the checkpoint in %s has %d hidden units, this run %d", cfg.CheckpointDir, st.Hidden, cfg.Hidden)
		}
		if st.GlobalBatch != B {
			fmt.Fprintf(logw, "warning: the checkpoint was taken with global batch %d, this run has %d: the data order changes\n", st.GlobalBatch, B)
		}
		copy(model.Params, st.Params)
		copy(velocity, st.Velocity)
		if err := pcg.UnmarshalBinary(st.RNG); err != nil {
			return nil, fmt.Errorf("mnist: checkpoint RNG state: %w", err)
		}
		step = st.Step
		res.ResumedFrom = step
		fmt.Fprintf(logw, "resumed from checkpoint step %d\n", step)
	}
	fmt.Fprintf(logw, "training world_size=%d batch_per_rank=%d global_batch=%d steps=%d steps_per_epoch=%d params=%d\n",
		world, cfg.BatchPerRank, B, total, perEpoch, len(model.Params))

	// The gradient buffer carries the loss sum and the count of correct
	// predictions after the parameters, so one AllReduce moves both.
	P := len(model.Params)
	buf := make([]float64, P+2)
	s := newScratch(cfg.Hidden)
	var (
		perm          []int
		permEpoch     = -1
		epochStartRNG []byte
		trainTime     time.Duration
		trained       int // global examples trained on by this process
		winLoss       float64
		winCorrect    float64
		winN          int
		winStart      = time.Now()
		winTrain      time.Duration
	)
	saveCheckpoint := func() error {
		if rank != 0 || cfg.CheckpointDir == "" {
			return nil
		}
		defer fmt.Fprintf(logw, "checkpoint step=%d dir=%s\n", step, cfg.CheckpointDir)
		e, es := step/perEpoch, step%perEpoch
		rngState := epochStartRNG
		if e != permEpoch {
			// The next epoch's permutation is not drawn yet: the
			// generator is at its start now.
			rngState, _ = pcg.MarshalBinary()
		}
		return SaveState(cfg.CheckpointDir, CheckpointFile, &State{
			Version: stateVersion, Hidden: cfg.Hidden, Seed: cfg.Seed, GlobalBatch: B,
			Step: step, Epoch: e, EpochStep: es, RNG: rngState,
			Params: model.Params, Velocity: velocity,
		})
	}
	evaluate := func() error {
		acc, loss, err := evaluateTest(ctx, comm, model, data.Test, rank, world)
		if err != nil {
			return err
		}
		res.TestAccuracy, res.TestLoss = acc, loss
		fmt.Fprintf(logw, "step=%d epoch=%.2f test_accuracy=%.4f test_loss=%.4f\n", step, float64(step)/float64(perEpoch), acc, loss)
		return nil
	}

	for step < total {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		t0 := time.Now()
		if e := step / perEpoch; e != permEpoch {
			epochStartRNG, _ = pcg.MarshalBinary()
			perm = shuffle.Perm(n)
			permEpoch = e
		}
		clear(buf)
		grad := buf[:P]
		base := (step % perEpoch) * B
		for k := range cfg.BatchPerRank {
			i := perm[base+k*world+rank]
			loss, ok := model.accumulate(data.Train.Images[i], data.Train.Labels[i], grad, s)
			buf[P] += loss
			if ok {
				buf[P+1]++
			}
		}
		if comm != nil {
			if err := netcoll.AllReduce(ctx, comm, buf, buf, netcoll.Sum); err != nil {
				return nil, fmt.Errorf("mnist: step %d: allreduce of the gradients: %w", step+1, err)
			}
		}
		// Average over the global batch, then momentum SGD.
		inv := 1 / float64(B)
		lr, mu := learningRate(cfg.LR, step, total), cfg.Momentum
		for j, g := range grad {
			v := mu*velocity[j] + g*inv
			velocity[j] = v
			model.Params[j] -= lr * v
		}
		step++
		dt := time.Since(t0)
		trainTime += dt
		winTrain += dt
		trained += B
		winLoss += buf[P]
		winCorrect += buf[P+1]
		winN += B
		if math.IsNaN(buf[P]) {
			return nil, fmt.Errorf("mnist: step %d: the loss is NaN (learning rate %g too high?)", step, cfg.LR)
		}
		if cfg.OnStep != nil {
			cfg.OnStep(step)
		}
		if cfg.LogEvery > 0 && (step%cfg.LogEvery == 0 || step == total) {
			res.TrainLoss = winLoss / float64(winN)
			fmt.Fprintf(logw, "step=%d epoch=%.2f loss=%.4f train_accuracy=%.4f samples_per_s=%.0f elapsed_s=%.1f\n",
				step, float64(step)/float64(perEpoch), res.TrainLoss, winCorrect/float64(winN),
				float64(winN)/winTrain.Seconds(), time.Since(winStart).Seconds())
			winLoss, winCorrect, winN, winTrain = 0, 0, 0, 0
		} else if winN > 0 {
			res.TrainLoss = winLoss / float64(winN)
		}
		if step%perEpoch == 0 && step != total {
			if err := evaluate(); err != nil {
				return nil, err
			}
		}
		if cfg.CheckpointEvery > 0 && step%cfg.CheckpointEvery == 0 && step != total {
			if err := saveCheckpoint(); err != nil {
				return nil, err
			}
		}
		select {
		case <-cfg.CheckpointNow:
			fmt.Fprintf(logw, "signalled: checkpointing at step %d\n", step)
			if err := saveCheckpoint(); err != nil {
				return nil, err
			}
		default:
		}
	}
	if err := evaluate(); err != nil {
		return nil, err
	}
	if err := saveCheckpoint(); err != nil {
		return nil, err
	}
	res.Steps = step
	res.Epochs = float64(step) / float64(perEpoch)
	res.TrainSeconds = trainTime.Seconds()
	if trainTime > 0 {
		res.SamplesPerSec = float64(trained) / trainTime.Seconds()
	}
	if rank == 0 && cfg.ResultDir != "" {
		if err := writeResult(cfg, res, model, velocity, B); err != nil {
			return nil, err
		}
	}
	fmt.Fprintf(logw, "done steps=%d test_accuracy=%.4f samples_per_s=%.0f train_s=%.1f\n", res.Steps, res.TestAccuracy, res.SamplesPerSec, res.TrainSeconds)
	return res, nil
}

// newInitRNG returns the generator of the initial weights.
func newInitRNG(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, 1)) }

// ReadMetrics reads metrics.json from a result directory.
func ReadMetrics(dir string) (*Result, error) {
	b, err := os.ReadFile(filepath.Join(dir, MetricsFile))
	if err != nil {
		return nil, err
	}
	var r Result
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("mnist: %s: %w", filepath.Join(dir, MetricsFile), err)
	}
	return &r, nil
}

// learningRate is the cosine schedule: base at step 0 down to a tenth of
// it at the last step. It depends on the step alone, so a resumed run
// follows the same schedule.
func learningRate(base float64, step, total int) float64 {
	frac := float64(step) / float64(max(total, 1))
	return base * (0.1 + 0.9*0.5*(1+math.Cos(math.Pi*frac)))
}

// evaluateTest measures the model on the test set, each rank taking every
// world-th example, and returns the accuracy and mean loss.
func evaluateTest(ctx context.Context, comm *netcoll.Comm, m *MLP, test *Set, rank, world int) (acc, loss float64, err error) {
	var idx []int
	for i := rank; i < test.Len(); i += world {
		idx = append(idx, i)
	}
	lossSum, correct := m.evaluate(test, idx)
	sums := []float64{lossSum, float64(correct)}
	if comm != nil {
		if err := netcoll.AllReduce(ctx, comm, sums, sums, netcoll.Sum); err != nil {
			return 0, 0, fmt.Errorf("mnist: evaluation: %w", err)
		}
	}
	n := float64(test.Len())
	return sums[1] / n, sums[0] / n, nil
}

// restore returns the checkpoint rank 0 finds in cfg.CheckpointDir, or nil,
// on every rank: rank 0 reads it and broadcasts it, so only rank 0 needs to
// see the directory.
func restore(ctx context.Context, comm *netcoll.Comm, cfg Config, rank int) (*State, error) {
	var st *State
	var loadErr error
	if rank == 0 && cfg.CheckpointDir != "" {
		st, loadErr = LoadState(cfg.CheckpointDir, CheckpointFile)
	}
	if comm == nil || comm.Size() == 1 {
		return st, loadErr
	}
	// Header: ok (-1 error, 0 none, 1 found), hidden, global batch, step,
	// epoch, epoch step, then the RNG bytes one per element.
	const rngMax = 32
	hdr := make([]int64, 6+rngMax+1)
	if rank == 0 {
		switch {
		case loadErr != nil:
			hdr[0] = -1
		case st != nil && len(st.RNG) <= rngMax:
			hdr[0] = 1
			hdr[1], hdr[2], hdr[3], hdr[4], hdr[5] = int64(st.Hidden), int64(st.GlobalBatch), int64(st.Step), int64(st.Epoch), int64(st.EpochStep)
			hdr[6] = int64(len(st.RNG))
			for i, b := range st.RNG {
				hdr[7+i] = int64(b)
			}
		case st != nil:
			loadErr = errors.New("mnist: checkpoint RNG state is too long")
			hdr[0] = -1
		}
	}
	if err := netcoll.Broadcast(ctx, comm, hdr, 0); err != nil {
		return nil, fmt.Errorf("mnist: broadcasting the checkpoint: %w", err)
	}
	switch hdr[0] {
	case -1:
		if loadErr == nil {
			loadErr = errors.New("mnist: rank 0 could not read the checkpoint")
		}
		return nil, loadErr
	case 0:
		return nil, nil
	}
	if rank != 0 {
		st = &State{Version: stateVersion, Hidden: int(hdr[1]), Seed: cfg.Seed, GlobalBatch: int(hdr[2]),
			Step: int(hdr[3]), Epoch: int(hdr[4]), EpochStep: int(hdr[5]), RNG: make([]byte, hdr[6])}
		for i := range st.RNG {
			st.RNG[i] = byte(hdr[7+i])
		}
		p := NumParams(st.Hidden)
		st.Params, st.Velocity = make([]float64, p), make([]float64, p)
	}
	weights := make([]float64, 2*len(st.Params))
	if rank == 0 {
		copy(weights, st.Params)
		copy(weights[len(st.Params):], st.Velocity)
	}
	if err := netcoll.Broadcast(ctx, comm, weights, 0); err != nil {
		return nil, fmt.Errorf("mnist: broadcasting the checkpoint: %w", err)
	}
	copy(st.Params, weights)
	copy(st.Velocity, weights[len(st.Params):])
	return st, nil
}

// writeResult writes the final model and metrics.json to cfg.ResultDir.
func writeResult(cfg Config, res *Result, m *MLP, velocity []float64, B int) error {
	if err := SaveState(cfg.ResultDir, ModelFile, &State{
		Version: stateVersion, Hidden: m.Hidden, Seed: cfg.Seed, GlobalBatch: B,
		Step: res.Steps, Params: m.Params, Velocity: velocity,
	}); err != nil {
		return err
	}
	b, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(cfg.ResultDir, "."+MetricsFile+".tmp")
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("mnist: result: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(cfg.ResultDir, MetricsFile)); err != nil {
		return fmt.Errorf("mnist: result: %w", err)
	}
	return nil
}
