package agent

import (
	"time"

	"github.com/loomhpc/loom/gossip"
)

// startGossip makes the agent a member of the servers' gossip pool: that is
// how the leader learns, within seconds, that this node died or was cut
// off. Joining is retried in the background until it succeeds.
func (a *Agent) startGossip() error {
	bind := a.cfg.GossipAddr
	if bind == "" {
		bind = ":7072"
	}
	g, err := gossip.New(gossip.Config{
		Name: a.cfg.Name, BindAddr: bind, Keys: a.cfg.GossipKeys,
		Meta:   gossip.Meta{Role: gossip.RoleAgent, Name: a.cfg.Name, RPCAddr: a.node.Address, Version: Version},
		Logger: a.log,
	})
	if err != nil {
		return err
	}
	a.gossip = g
	a.goFunc(func() {
		b := newBackoff(100*time.Millisecond, 5*time.Second)
		for a.ctx.Err() == nil {
			if _, err := g.Join(a.cfg.GossipJoin); err == nil {
				a.log.Info("joined the gossip pool", "addr", g.Addr())
				break
			}
			select {
			case <-a.ctx.Done():
			case <-time.After(b.next()):
			}
		}
		// The agent only needs to be a member: drain events, and should it
		// see no live server (after a partition both sides declare the
		// other dead), join again rather than wait for memberlist's
		// periodic sync.
		check := time.NewTicker(2 * time.Second)
		defer check.Stop()
		for {
			select {
			case <-a.ctx.Done():
				return
			case <-g.Events():
			case <-check.C:
				if !seesServer(g) {
					if _, err := g.Join(a.cfg.GossipJoin); err == nil {
						a.log.Info("rejoined the gossip pool")
					}
				}
			}
		}
	})
	return nil
}

func seesServer(g *gossip.Gossip) bool {
	for _, m := range g.Members() {
		if m.Alive && m.Meta.Role == gossip.RoleServer {
			return true
		}
	}
	return false
}
