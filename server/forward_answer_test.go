package server

import (
	"context"
	"errors"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestLeaderDidNotAnswer(t *testing.T) {
	live := context.Background()
	gone, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name string
		ctx  context.Context
		err  error
		want bool
	}{
		{"answered", live, nil, false},
		{"unreachable", live, status.Error(codes.Unavailable, "connection refused"), true},
		{"connection closed under the call", live, status.Error(codes.Canceled, "grpc: the client connection is closing"), true},
		{"caller gave up", gone, status.Error(codes.Canceled, "context canceled"), false},
		{"leader refused", live, status.Error(codes.FailedPrecondition, "job finished"), false},
		{"not a status", live, errors.New("boom"), false},
	}
	for _, tt := range tests {
		if got := leaderDidNotAnswer(tt.ctx, tt.err); got != tt.want {
			t.Errorf("%s: leaderDidNotAnswer(%v) = %v, want %v", tt.name, tt.err, got, tt.want)
		}
	}
}
