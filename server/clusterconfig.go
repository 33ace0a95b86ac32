package server

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/loomhpc/loom/api"
	"github.com/loomhpc/loom/api/apirpc"
	"github.com/loomhpc/loom/auth"
	"github.com/loomhpc/loom/clusterconf"
	"github.com/loomhpc/loom/scheduler"
	"github.com/loomhpc/loom/state"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// The cluster configuration (docs/configuration.md): the leader reads its
// file when it takes office and on a reload (loom operator reload,
// SIGHUP on any server), and proposes it when its digest differs from the
// replicated one; every server schedules from the replicated copy.

// ErrInvalidConfig wraps a configuration file that failed validation: it
// is refused and nothing changes.
var ErrInvalidConfig = errors.New("invalid cluster configuration")

// readClusterConfig reads this server's file and applies its flag
// overrides; nil, nil when it has neither.
func (s *Server) readClusterConfig() (*api.ClusterConfig, error) {
	var c *api.ClusterConfig
	switch {
	case s.cfg.ClusterConfigPath != "":
		var err error
		if c, err = clusterconf.Load(s.cfg.ClusterConfigPath); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
		}
	case len(s.cfg.ClusterConfigOverrides) > 0:
		empty := sha256.Sum256(nil)
		c = &api.ClusterConfig{Scheduler: &api.SchedulerSettings{}, Sha256: hex.EncodeToString(empty[:])}
	default:
		return nil, nil
	}
	if err := clusterconf.ApplyOverrides(c, s.cfg.ClusterConfigOverrides); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	c.LoadedBy = s.cfg.Name
	return c, nil
}

// reloadClusterConfig reads the file on the leader and replicates it if
// its digest differs from the configuration in force.
func (s *Server) reloadClusterConfig(ctx context.Context, why string) (*api.ReloadConfigResponse, error) {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	c, err := s.readClusterConfig()
	if err != nil {
		s.log.Error("cluster configuration refused; the one in force stays", "why", why, "err", err)
		return nil, err
	}
	if err := s.raft.Barrier(ctx); err != nil {
		return nil, err
	}
	cur := s.State()
	if c == nil || c.Sha256 == cur.Config().GetSha256() {
		s.log.Info("cluster configuration unchanged", "why", why, "source", s.cfg.ClusterConfigPath)
		return &api.ReloadConfigResponse{Config: cur.Config(), Index: cur.Index()}, nil
	}
	c.LoadedUnixMs = nowMs()
	res, err := s.apply(ctx, state.CmdSetConfig, &api.SetConfigCommand{Config: c, NowUnixMs: c.LoadedUnixMs})
	if err != nil {
		return nil, err
	}
	changes := clusterconf.Diff(cur.Config(), c)
	s.log.Info("cluster configuration replicated", "why", why, "source", c.Source, "sha256", c.Sha256,
		"index", res.Index, "changes", strings.Join(changes, "; "))
	return &api.ReloadConfigResponse{Config: c, Changed: true, Index: res.Index, Changes: changes}, nil
}

// ReloadConfig makes the leader read its configuration file again and
// replicate what changed (what SIGHUP does); a follower asks the leader,
// as root on the leader's host would. A file that fails validation is
// refused with its error, and the configuration in force stays.
func (s *Server) ReloadConfig(ctx context.Context) (*api.ReloadConfigResponse, error) {
	ctx = auth.NewContext(ctx, auth.Identity{UID: 0, GID: 0, Method: auth.MethodLocal, Local: true})
	return (&operatorService{s: s}).ReloadConfig(ctx, &api.ReloadConfigRequest{})
}

// ReloadConfig is loom operator reload: the leader reads its file again.
func (os *operatorService) ReloadConfig(ctx context.Context, req *api.ReloadConfigRequest) (*api.ReloadConfigResponse, error) {
	s := os.s
	if resp, fwd, err := forward(s, ctx, func(ctx context.Context, c *grpc.ClientConn) (*api.ReloadConfigResponse, error) {
		return apirpc.NewOperatorClient(c).ReloadConfig(ctx, req)
	}); fwd {
		return resp, err
	}
	resp, err := s.reloadClusterConfig(ctx, "reload")
	if errors.Is(err, ErrInvalidConfig) {
		return nil, status.Error(codes.FailedPrecondition, err.Error())
	}
	if err != nil {
		return nil, toStatus(err)
	}
	return resp, nil
}

// takeOfficeConfig replicates the leader's file when it takes office, if
// it differs from what is in force; a bad file leaves the replicated
// configuration in force (logged).
func (s *Server) takeOfficeConfig(ctx context.Context) {
	if _, err := s.reloadClusterConfig(ctx, "leader took office"); err != nil && ctx.Err() == nil && !errors.Is(err, ErrInvalidConfig) {
		s.log.Warn("cluster configuration not replicated", "err", err)
	}
}

// schedulerConfigCache builds the scheduler's Config from the replicated
// cluster configuration, once per configuration (by pointer: a new one is
// a new entry).
type schedulerConfigCache struct {
	from *api.ClusterConfig
	cfg  scheduler.Config
}

// at returns the scheduler configuration for c; nil c (none ever set)
// gives the server's own flags, fallback.
func (sc *schedulerConfigCache) at(c *api.ClusterConfig, fallback scheduler.Config) scheduler.Config {
	if c == nil {
		return fallback
	}
	if c != sc.from {
		sc.from, sc.cfg = c, clusterconf.ToScheduler(c)
		if sc.cfg.MaxPlacementsPerCycle == 0 {
			sc.cfg.MaxPlacementsPerCycle = fallback.MaxPlacementsPerCycle
		}
	}
	return sc.cfg
}
