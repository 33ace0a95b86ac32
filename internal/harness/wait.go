package harness

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"
)

// ScaleEnv names the environment variable that multiplies every timeout
// given to Wait, for slow or shared CI machines (e.g. 2 or 3.5).
const ScaleEnv = "LOOM_TEST_TIMEOUT_SCALE"

// PollInterval is how often Wait checks its condition; it is also the
// granularity of the times the benchmarks measure with it.
const PollInterval = 10 * time.Millisecond

// ErrTimeout is what Wait returns, wrapped, when its condition did not
// hold in time.
var ErrTimeout = errors.New("timed out")

// Scale returns timeout multiplied by $LOOM_TEST_TIMEOUT_SCALE, or timeout
// itself when the variable is unset or not a positive number.
func Scale(timeout time.Duration) time.Duration {
	k, err := strconv.ParseFloat(os.Getenv(ScaleEnv), 64)
	if err != nil || k <= 0 {
		return timeout
	}
	return time.Duration(float64(timeout) * k)
}

// Wait polls cond every PollInterval until it holds, and returns an error
// wrapping ErrTimeout once the scaled timeout has passed, or ctx's error
// when ctx ends first. what names the awaited condition in the error.
// Polling is the only way to see another process's progress; every wait
// is bounded.
func Wait(ctx context.Context, what string, timeout time.Duration, cond func() bool) error {
	timeout = Scale(timeout)
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(PollInterval)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("%w after %s waiting for %s", ErrTimeout, timeout, what)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", what, ctx.Err())
		case <-tick.C:
		}
	}
	return nil
}
