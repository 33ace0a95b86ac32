package harness

import (
	"context"
	"os"
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

// RequireEnv names the environment variable that turns every skip of a
// test for want of something on the machine (root, containerd, the ip
// command, prometheus, …) into a failure. CI sets it to 1, so that a
// package it failed to install or a daemon it failed to start cannot pass
// as a skipped test.
const RequireEnv = "LOOM_E2E_REQUIRE"

// SkipTB is the part of testing.TB that Require uses.
type SkipTB interface {
	TB
	Skipf(format string, args ...any)
}

// Require lets t go on when ok. Otherwise it skips t for want of what
// ("root", "the ip command (apt-get install iproute2)"), or fails it when
// $LOOM_E2E_REQUIRE is 1.
func Require(t SkipTB, what string, ok bool) {
	t.Helper()
	if ok {
		return
	}
	if os.Getenv(RequireEnv) == "1" {
		t.Fatalf("needs %s, and %s=1 makes that a failure instead of a skip", what, RequireEnv)
		return
	}
	t.Skipf("skipping: needs %s (%s=1 makes this a failure)", what, RequireEnv)
}
