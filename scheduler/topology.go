package scheduler

import (
	"fmt"
	"math/bits"

	"github.com/loomhpc/loom/api"
	"github.com/loomhpc/loom/gpu"
)

// LinkBandwidth returns the bandwidth the scheduler assumes for l, in GB/s
// one way: package gpu's estimate for its class (gpu/bandwidth.go gives
// the sources), except that a device's link to itself counts for nothing
// and an NVLink whose count the node left out counts as one link.
func LinkBandwidth(l *api.Link) float32 {
	link := gpu.LinkFromAPI(l)
	switch link.Class {
	case gpu.LinkSelf:
		return 0
	case gpu.LinkNV:
		link.NVLinks = max(link.NVLinks, 1)
	}
	return float32(link.BandwidthGBps())
}

// bandwidth returns node i's GPU×GPU bandwidth matrix, or nil when the
// node reports no link matrix.
func (c *cycle) bandwidth(i int) []float32 {
	ni := c.nodes[i]
	if ni.bw != nil {
		return ni.bw
	}
	links := ni.node.GetTopology().GetLinks()
	all := len(ni.node.GetTopology().GetGpus())
	n := len(ni.gpus)
	if len(links) != all*all {
		return nil
	}
	ni.bw = make([]float32, n*n)
	for a := range n {
		for b := range n {
			if a != b {
				ni.bw[a*n+b] = LinkBandwidth(links[a*all+b])
			}
		}
	}
	return ni.bw
}

// chooseGPUs picks k GPUs of mask on node i: the set with the highest
// total bandwidth between its members; among equals, one on a single NUMA
// node; then the one that leaves the best-connected GPUs behind (so a
// later job still finds an NVLinked set); then the lowest indices.
func (c *cycle) chooseGPUs(i int, mask uint64, k int, exclusive bool) uint64 {
	nfree := bits.OnesCount64(mask)
	if exclusive || k >= nfree {
		return mask
	}
	if k == 0 {
		return 0
	}
	bw := c.bandwidth(i)
	if bw == nil || nfree > 20 {
		return lowest(mask, k)
	}
	ni := c.nodes[i]
	n := len(ni.gpus)
	idx := make([]int, 0, nfree)
	for b := mask; b != 0; b &= b - 1 {
		idx = append(idx, bits.TrailingZeros64(b))
	}
	inner := func(sel uint64) float32 {
		var s float32
		for x := sel; x != 0; x &= x - 1 {
			a := bits.TrailingZeros64(x)
			for y := x & (x - 1); y != 0; y &= y - 1 {
				s += bw[a*n+bits.TrailingZeros64(y)]
			}
		}
		return s
	}
	oneNUMA := func(sel uint64) bool {
		first := int32(-2)
		for x := sel; x != 0; x &= x - 1 {
			nn := ni.gpus[bits.TrailingZeros64(x)].NumaNode
			if first != -2 && nn != first {
				return false
			}
			first = nn
		}
		return true
	}
	var best uint64
	var bestIn, bestLeft float32
	bestNUMA := false
	// Enumerate k-subsets of the free GPUs (Gosper's hack over positions).
	for comb := uint64(1)<<k - 1; comb < 1<<nfree; {
		var sel uint64
		for x := comb; x != 0; x &= x - 1 {
			sel |= 1 << idx[bits.TrailingZeros64(x)]
		}
		in, numa, left := inner(sel), oneNUMA(sel), inner(mask&^sel)
		better := best == 0 || in > bestIn ||
			(in == bestIn && numa && !bestNUMA) ||
			(in == bestIn && numa == bestNUMA && left > bestLeft)
		if better {
			best, bestIn, bestNUMA, bestLeft = sel, in, numa, left
		}
		lo := comb & -comb
		hi := comb + lo
		comb = hi | ((comb^hi)>>2)/lo
	}
	return best
}

// lowest returns the k lowest set bits of mask.
func lowest(mask uint64, k int) uint64 {
	var out uint64
	for ; k > 0 && mask != 0; k-- {
		b := mask & -mask
		out |= b
		mask &^= b
	}
	return out
}

// Network is the switch tree of a cluster, as Slurm's topology.conf
// describes it: leaf switches name their nodes, upper switches their
// child switches.
type Network struct {
	leafOf   map[string]string // node -> leaf switch
	parentOf map[string]string // switch -> parent switch
}

// Leaf returns the leaf switch of node, or "".
func (n *Network) Leaf(node string) string { return n.leafOf[node] }

// Parent returns the switch above sw, or "".
func (n *Network) Parent(sw string) string { return n.parentOf[sw] }

// NewNetwork builds the switch tree from the cluster configuration's
// switches (clusterconf reads and checks them, from topology.conf or
// loom.toml). Loom uses two levels: a node's leaf switch and the switch
// above it.
func NewNetwork(switches []*api.SwitchConfig) (*Network, error) {
	net := &Network{leafOf: map[string]string{}, parentOf: map[string]string{}}
	for _, sw := range switches {
		if sw.Nodes != "" {
			hs, err := api.ExpandHostlist(sw.Nodes)
			if err != nil {
				return nil, fmt.Errorf("switch %s: nodes %s: %w", sw.Name, sw.Nodes, err)
			}
			for _, h := range hs {
				net.leafOf[h] = sw.Name
			}
		}
		if sw.Switches != "" {
			ss, err := api.ExpandHostlist(sw.Switches)
			if err != nil {
				return nil, fmt.Errorf("switch %s: switches %s: %w", sw.Name, sw.Switches, err)
			}
			for _, c := range ss {
				net.parentOf[c] = sw.Name
			}
		}
	}
	return net, nil
}
