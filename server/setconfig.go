package server

import (
	"context"
	"fmt"

	"github.com/loomhpc/loom/api"
	"github.com/loomhpc/loom/state"
)

// SetClusterConfig commits cfg as the cluster configuration (a SetConfig
// entry): what loom dev does with its --config file once its server leads.
// Only the leader may.
func (s *Server) SetClusterConfig(ctx context.Context, cfg *api.ClusterConfig) error {
	res, err := s.apply(ctx, state.CmdSetConfig, &api.SetConfigCommand{Config: cfg, NowUnixMs: nowMs()})
	if err != nil {
		return fmt.Errorf("set the cluster configuration: %w", err)
	}
	return res.Err
}
