package server

import (
	"context"
	"errors"

	"github.com/loomhpc/loom/api"
	"github.com/loomhpc/loom/backup"
	"github.com/loomhpc/loom/raftnode"
	"github.com/loomhpc/loom/state"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// errorCodes maps the errors the layers below return to gRPC codes; it is
// the one place that decides what a client sees.
var errorCodes = []struct {
	err  error
	code codes.Code
}{
	{raftnode.ErrNotLeader, codes.Unavailable},
	{state.ErrJobNotFound, codes.NotFound},
	{state.ErrNodeNotFound, codes.NotFound},
	{state.ErrPermission, codes.PermissionDenied},
	{state.ErrJobFinished, codes.FailedPrecondition},
	{state.ErrNotPending, codes.FailedPrecondition},
	{state.ErrNotRequeueable, codes.FailedPrecondition},
	{state.ErrStarted, codes.FailedPrecondition},
	{state.ErrNothingToUpdate, codes.InvalidArgument},
	{state.ErrStaleGeneration, codes.FailedPrecondition},
	{state.ErrStepNotFound, codes.NotFound},
	{state.ErrNoAllocation, codes.FailedPrecondition},
	{state.ErrNotAllocation, codes.FailedPrecondition},
	{state.ErrStepNeverFits, codes.InvalidArgument},
	{state.ErrStepFinished, codes.FailedPrecondition},
	{state.ErrLimit, codes.ResourceExhausted},
	{state.ErrReservationNotFound, codes.NotFound},
	{state.ErrReservationExists, codes.AlreadyExists},
	{state.ErrReservationConflict, codes.FailedPrecondition},
	{api.ErrEmptyJob, codes.InvalidArgument},
	{errInfeasible, codes.InvalidArgument},
	{errNoNodes, codes.FailedPrecondition},
	{backup.ErrCorrupt, codes.InvalidArgument},
}

var (
	errInfeasible = errors.New("job can never run")
	errNoNodes    = errors.New("no nodes have registered yet")
)

// toStatus converts err for the wire. Context errors pass through as their
// own codes; unknown errors become Internal.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	switch {
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	}
	var fe *api.FieldError
	if errors.As(err, &fe) {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	for _, e := range errorCodes {
		if errors.Is(err, e.err) {
			return status.Error(e.code, err.Error())
		}
	}
	return status.Error(codes.Internal, err.Error())
}
