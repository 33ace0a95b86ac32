package netcoll

import (
	"errors"
	"fmt"
	"strings"
)

// Sentinel errors; an *Error wraps one of them or a context error.
var (
	// ErrPeerFailed means another rank died, stalled or aborted.
	ErrPeerFailed = errors.New("netcoll: peer failed")
	// ErrTimeout means a peer made no progress within Config.Timeout.
	ErrTimeout = errors.New("netcoll: peer made no progress within the timeout")
	// ErrAborted means Abort was called on this communicator.
	ErrAborted = errors.New("netcoll: communicator aborted")
	// ErrClosed means the communicator was closed.
	ErrClosed = errors.New("netcoll: communicator closed")
	// ErrEpochMismatch means a connection came from a rank of another
	// generation of the job (a stale rank after a requeue).
	ErrEpochMismatch = errors.New("netcoll: epoch mismatch")
)

// Error is the error every collective returns once the communicator has
// failed. Peer is the rank held responsible (this rank itself for Abort or a
// cancelled context); the communicator stays failed afterwards.
type Error struct {
	Op   string // the collective, e.g. "allreduce"
	Rank int    // the rank that returns the error
	Peer int    // the rank that failed
	Err  error  // the cause
}

func (e *Error) Error() string {
	cause := strings.TrimPrefix(e.Err.Error(), "netcoll: ")
	if e.Peer == e.Rank {
		return fmt.Sprintf("netcoll: %s on rank %d: %s", e.Op, e.Rank, cause)
	}
	return fmt.Sprintf("netcoll: %s on rank %d: peer rank %d: %s", e.Op, e.Rank, e.Peer, cause)
}

func (e *Error) Unwrap() error { return e.Err }
