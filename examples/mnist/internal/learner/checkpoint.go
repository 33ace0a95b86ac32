package learner

import (
	"encoding/gob"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// CheckpointFile is the name of the checkpoint in the checkpoint
// directory, and ModelFile that of the final model in the result
// directory. Both hold a gob-encoded State.
const (
	CheckpointFile = "mnist.ckpt"
	ModelFile      = "model.ckpt"
	MetricsFile    = "metrics.json"
)

// stateVersion is bumped when State changes incompatibly.
const stateVersion = 1

// State is everything a resumed run needs to continue exactly where the
// checkpointed one was: the weights, the optimizer's momentum, the step,
// the data position and the shuffling RNG.
type State struct {
	Version     int
	Hidden      int
	Seed        uint64
	GlobalBatch int
	// Step is the number of optimizer steps taken.
	Step int
	// Epoch and EpochStep are the data position of the next step: the
	// epoch and the index of the global batch within it.
	Epoch, EpochStep int
	// RNG is the shuffling generator's state (rand.PCG's binary form) at
	// the start of Epoch: drawing that epoch's permutation from it again
	// gives the same order.
	RNG      []byte
	Params   []float64
	Velocity []float64
}

// SaveState writes st to dir/name atomically: to a temporary file in dir,
// synced, then renamed over the old one, and the directory synced, so a
// crash at any point leaves either the old or the new file, never a torn
// one.
func SaveState(dir, name string, st *State) (err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("mnist: checkpoint: %w", err)
	}
	f, err := os.CreateTemp(dir, "."+name+".tmp-*")
	if err != nil {
		return fmt.Errorf("mnist: checkpoint: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err := gob.NewEncoder(f).Encode(st); err != nil {
		return fmt.Errorf("mnist: checkpoint: encoding %s: %w", f.Name(), err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("mnist: checkpoint: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("mnist: checkpoint: %w", err)
	}
	if err := os.Rename(f.Name(), filepath.Join(dir, name)); err != nil {
		return fmt.Errorf("mnist: checkpoint: %w", err)
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// LoadState reads dir/name. It returns (nil, nil) when there is no such
// file: a fresh start.
func LoadState(dir, name string) (*State, error) {
	path := filepath.Join(dir, name)
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("mnist: checkpoint: %w", err)
	}
	defer f.Close()
	var st State
	if err := gob.NewDecoder(f).Decode(&st); err != nil {
		return nil, fmt.Errorf("mnist: checkpoint %s is unreadable: %w (delete it to start over)", path, err)
	}
	if st.Version != stateVersion {
		return nil, fmt.Errorf("mnist: checkpoint %s has version %d, this learner reads %d (delete it to start over)", path, st.Version, stateVersion)
	}
	if n := NumParams(st.Hidden); len(st.Params) != n || len(st.Velocity) != n {
		return nil, fmt.Errorf("mnist: checkpoint %s: %d parameters and %d momenta for %d hidden units, want %d", path, len(st.Params), len(st.Velocity), st.Hidden, n)
	}
	return &st, nil
}
