package agent

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/loomhpc/loom/api"
	"github.com/loomhpc/loom/gpu"
	"github.com/loomhpc/loom/gpu/probe"
	"google.golang.org/protobuf/proto"
)

// newSampler reads the node's GPUs: through NVML when discovery used it,
// otherwise simulated values that follow whether a job holds each GPU.
func (a *Agent) newSampler(found *probe.Node) gpu.Sampler {
	if found.Topology.GetProfile() == "nvml" {
		s, err := probe.NewNVMLSampler(found.Detail)
		if err == nil {
			return s
		}
		a.log.Warn("NVML sampling unavailable; GPU metrics will be simulated", "err", err)
	}
	return gpu.NewSimSampler(found.Detail, a.gpuHolder)
}

// gpuHolder says which job and user hold a GPU here, for metric labels.
func (a *Agent) gpuHolder(uuid string) (job, user string, ok bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, t := range a.tasks {
		for _, g := range t.rank.GpuUuids {
			if g == uuid {
				return strconv.FormatUint(t.key.job, 10), t.job.User, true
			}
		}
	}
	return "", "", false
}

// watchHealth turns a GPU health event into what the scheduler must know:
// the GPU is re-registered unhealthy (so nothing is placed on it) and the
// node is drained with the reason, for an admin to look at.
func (a *Agent) watchHealth(ctx context.Context) {
	for ev := range a.sampler.Health(ctx) {
		if ev.Healthy {
			continue
		}
		reason := fmt.Sprintf("GPU %d (%s) unhealthy: %s", ev.Index, ev.UUID, ev.Reason)
		a.log.Warn("GPU unhealthy; draining node", "gpu", ev.Index, "uuid", ev.UUID, "reason", ev.Reason)
		a.mu.Lock()
		n := proto.Clone(a.node).(*api.Node)
		for _, g := range n.GetTopology().GetGpus() {
			if g.Uuid == ev.UUID {
				g.Healthy, g.HealthReason = false, ev.Reason
			}
		}
		a.node = n
		a.mu.Unlock()
		for ctx.Err() == nil {
			rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			_, err := a.client.Register(rctx, &api.RegisterRequest{Node: n})
			if err == nil {
				_, err = a.nodes.DrainNode(rctx, &api.NodeStateRequest{Name: n.Name, Reason: reason})
			}
			cancel()
			if err == nil {
				break
			}
			a.log.Warn("could not report the unhealthy GPU; retrying", "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
	}
}
