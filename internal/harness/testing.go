package harness

import (
	"context"
	"time"
)

// TB is the part of testing.TB that the helpers failing a test use.
// Taking it rather than testing.TB keeps package testing out of the loom
// binary, which links this package for its benchmarks.
type TB interface {
	Helper()
	Fatalf(format string, args ...any)
}

// WaitFor is Wait for a test: it polls cond until it holds and fails t
// when the scaled timeout passes first.
func WaitFor(t TB, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	if err := Wait(context.Background(), what, timeout, cond); err != nil {
		t.Fatalf("%v", err)
	}
}

// Port is FreePort for a test: it fails t when no port can be had.
func Port(t TB) int {
	t.Helper()
	port, err := FreePort()
	if err != nil {
		t.Fatalf("%v", err)
	}
	return port
}
