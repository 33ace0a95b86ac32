package state

import (
	"errors"
	"fmt"
)

// ErrMalformedCommand refuses a command that decodes but lacks what its
// type needs (a submit without a job spec, a placement without an
// allocation). No Loom server proposes one; refusing it on every replica
// alike, rather than crashing on it, keeps one bad entry from taking the
// whole cluster down on every replay.
var ErrMalformedCommand = errors.New("malformed command")

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformedCommand, fmt.Sprintf(format, args...))
}
