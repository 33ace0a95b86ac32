package server

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/loomhpc/loom/api"
	"github.com/loomhpc/loom/gossip"
	"github.com/loomhpc/loom/state"
)

// gossipReason prefixes the reason of a node the leader marked down from
// gossip, so that only those come back up on their own when the node is
// seen alive again (an admin's DOWN stays).
const gossipReason = "gossip: "

// startGossip joins this server to the pool of servers and agents.
func (s *Server) startGossip() error {
	g, err := gossip.New(gossip.Config{
		Name: "server/" + s.cfg.Name, BindAddr: s.cfg.GossipAddr, Keys: s.cfg.GossipKeys,
		Meta:   gossip.Meta{Role: gossip.RoleServer, Name: s.cfg.Name, RPCAddr: s.advertiseRPC},
		Logger: s.log,
	})
	if err != nil {
		return err
	}
	s.gossip = g
	s.gossipWake = make(chan struct{}, 1)
	s.goFunc(func() {
		if len(s.cfg.GossipJoin) > 0 {
			for s.ctx.Err() == nil {
				if _, err := g.Join(s.cfg.GossipJoin); err == nil {
					break
				}
				select {
				case <-s.ctx.Done():
				case <-time.After(time.Second):
				}
			}
		}
		for {
			select {
			case <-s.ctx.Done():
				return
			case ev := <-g.Events():
				if ev.Member.Meta.Role == gossip.RoleAgent {
					s.log.Info("gossip", "event", ev.Type.String(), "node", ev.Member.Name)
				}
				select {
				case s.gossipWake <- struct{}{}:
				default:
				}
			}
		}
	})
	return nil
}

// GossipAddr is where this server's gossip member listens ("" without gossip).
func (s *Server) GossipAddr() string {
	if s.gossip == nil {
		return ""
	}
	return s.gossip.Addr()
}

// nodeHealthLoop is the leader's translation of gossip into Raft: a node
// whose agent has not been alive in the pool for NodeDownGrace is marked
// DOWN (its gangs fail and are requeued); one marked down this way that is
// alive again comes back IDLE. A new leader first waits one grace period,
// so a failover does not mark every node down at once.
func (s *Server) nodeHealthLoop(ctx context.Context) {
	if s.gossip == nil {
		return
	}
	grace := s.cfg.NodeDownGrace
	leadSince := time.Now()
	missingSince := map[string]time.Time{}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-s.gossipWake:
		}
		now := time.Now()
		alive := map[string]bool{}
		for _, m := range s.gossip.Members() {
			if m.Alive && m.Meta.Role == gossip.RoleAgent {
				alive[m.Meta.Name] = true
			}
		}
		for n := range s.State().Nodes() {
			if alive[n.Name] {
				delete(missingSince, n.Name)
				if n.State == api.NodeState_DOWN && strings.HasPrefix(n.Reason, gossipReason) {
					s.setNodeState(ctx, n.Name, api.NodeState_IDLE, "")
				}
				continue
			}
			if n.State == api.NodeState_DOWN {
				continue
			}
			since, seen := missingSince[n.Name]
			if !seen {
				missingSince[n.Name] = now
				continue
			}
			if now.Sub(since) < grace || now.Sub(leadSince) < grace {
				continue
			}
			reason := fmt.Sprintf("%snot responding since %s", gossipReason, since.UTC().Format(time.RFC3339))
			if s.setNodeState(ctx, n.Name, api.NodeState_DOWN, reason) {
				s.metrics.nodeFailures.Inc()
				s.metrics.detect.Observe(time.Since(since).Seconds())
				s.log.Warn("node down", "node", n.Name, "reason", reason)
			}
		}
	}
}

func (s *Server) setNodeState(ctx context.Context, name string, st api.NodeState, reason string) bool {
	actx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	res, err := s.apply(actx, state.CmdNodeState, &api.NodeStateCommand{Name: name, State: st, Reason: reason, NowUnixMs: nowMs()})
	if err != nil || res.Err != nil {
		s.log.Warn("could not change node state", "node", name, "state", st, "err", err)
		return false
	}
	if st == api.NodeState_IDLE {
		s.log.Info("node back up", "node", name)
	}
	return true
}
