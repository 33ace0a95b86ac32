package cli

import (
	"fmt"
	"sort"
	"strings"

	"github.com/loomhpc/loom/api"
)

// Helpers on nodes shared by sinfo and scontrol.

// nodeStateInfo is how Slurm prints one effective node state.
type nodeStateInfo struct {
	short string // sinfo's STATE: "idle"
	long  string // sinfo -l's STATE: "idle", "mixed", "draining"
	show  string // scontrol's State=: "IDLE", "MIXED+DRAIN"
	order int    // row order in sinfo
}

// nodeState describes n's effective state. A drained node that still runs
// jobs is "draining" (drng), as in Slurm.
func nodeState(n *api.NodeInfo) nodeStateInfo {
	busy := len(n.GetJobIds()) > 0 || n.GetCpusAllocated() > 0 || n.GetGpusAllocated() > 0
	switch n.GetState() {
	case api.NodeState_IDLE:
		return nodeStateInfo{"idle", "idle", "IDLE", 2}
	case api.NodeState_MIXED:
		return nodeStateInfo{"mix", "mixed", "MIXED", 0}
	case api.NodeState_ALLOCATED:
		return nodeStateInfo{"alloc", "allocated", "ALLOCATED", 1}
	case api.NodeState_DRAIN:
		if busy {
			return nodeStateInfo{"drng", "draining", "MIXED+DRAIN", 3}
		}
		return nodeStateInfo{"drain", "drained", "IDLE+DRAIN", 4}
	case api.NodeState_DOWN:
		return nodeStateInfo{"down", "down", "DOWN", 5}
	}
	return nodeStateInfo{"unk", "unknown", "UNKNOWN", 6}
}

// matchesNodeState reports whether a --states word names n's state.
func matchesNodeState(n *api.NodeInfo, want string) bool {
	st := nodeState(n)
	w := strings.ToLower(want)
	switch w {
	case st.short, st.long, strings.ToLower(st.show), strings.ToLower(n.GetState().String()):
		return true
	case "drained":
		return st.short == "drain"
	case "allocated":
		return st.short == "alloc"
	case "mixed":
		return st.short == "mix"
	}
	return false
}

// partitionLabel marks the default partition with '*', as sinfo does.
func partitionLabel(p string) string {
	if p == api.DefaultPartition {
		return p + "*"
	}
	return p
}

// sortPartitions orders partition names: the default first, then by name.
func sortPartitions(ps []string) {
	sort.Slice(ps, func(i, j int) bool {
		if (ps[i] == api.DefaultPartition) != (ps[j] == api.DefaultPartition) {
			return ps[i] == api.DefaultPartition
		}
		return ps[i] < ps[j]
	})
}

// gresType is the Slurm GRES type for a GPU model name as NVML reports
// it, which is also the node feature the model gives (api.GPUFeature).
func gresType(model string) string { return api.GPUFeature(model) }

// nodeGres is the node's generic resources as Slurm's Gres field: its
// GPUs ("gpu:h100:8", one entry per model), then the other counts it
// declares ("nvme:3600") by name, or "(null)" for none. used counts
// allocated ones instead, the GPUs spread over the models in order, since
// NodeInfo carries only their total.
func nodeGres(n *api.NodeInfo, used bool) string {
	gpus := n.GetNode().GetTopology().GetGpus()
	var parts []string
	var models []string
	count := map[string]int{}
	for _, g := range gpus {
		t := gresType(g.GetModel())
		if _, ok := count[t]; !ok {
			models = append(models, t)
		}
		count[t]++
	}
	left := int(n.GetGpusAllocated())
	for _, t := range models {
		c := count[t]
		if used {
			c = min(c, left)
			left -= c
		}
		if t == "" {
			parts = append(parts, fmt.Sprintf("gpu:%d", c))
		} else {
			parts = append(parts, fmt.Sprintf("gpu:%s:%d", t, c))
		}
	}
	other := n.GetNode().GetGres()
	if used {
		other = map[string]uint64{}
		for g := range n.GetNode().GetGres() {
			other[g] = n.GetGresAllocated()[g]
		}
	}
	if s := api.FormatGres(other); s != "" {
		parts = append(parts, s)
	}
	if len(parts) == 0 {
		return "(null)"
	}
	return strings.Join(parts, ",")
}

// sortNodes orders nodes by name, numerically where names end in numbers
// (node2 before node10).
func sortNodes(nodes []*api.NodeInfo) {
	sort.SliceStable(nodes, func(i, j int) bool {
		return lessHost(nodes[i].GetNode().GetName(), nodes[j].GetNode().GetName())
	})
}

func lessHost(a, b string) bool {
	pa, na := splitTrailingNumber(a)
	pb, nb := splitTrailingNumber(b)
	if pa != pb {
		return a < b
	}
	if len(na) != len(nb) {
		return len(na) < len(nb)
	}
	return na < nb
}

func splitTrailingNumber(s string) (prefix, digits string) {
	i := len(s)
	for i > 0 && s[i-1] >= '0' && s[i-1] <= '9' {
		i--
	}
	return s[:i], strings.TrimLeft(s[i:], "0")
}
