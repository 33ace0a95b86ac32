package scheduler

import (
	"cmp"
	"fmt"
	"math/bits"
	"slices"
	"time"

	"github.com/loomhpc/loom/api"
)

// countsNodes is how many nodes r's feature counts (--constraint
// feature*N) ask for together; 0 without counts.
func (r *request) countsNodes() int {
	n := 0
	for _, fc := range r.counts {
		n += int(fc.Nodes)
	}
	return n
}

// placeCounted places a gang over len(shapes) nodes so that, for each of
// r's feature counts, that many of its nodes have the feature, each node
// counted once (as Slurm reads "[rack1*2&rack2*4]": two nodes of rack1
// and four of rack2); the other nodes are any that meet the rest of the
// constraint. It is greedy: the scarcest feature first, each from the
// nodes with the fewest other counted features, best fit among equals,
// and the rest from nodes with the fewest counted features, so as not to
// spend them. The gang spreads over whatever leaves these nodes are in;
// with --switches, too many is a topology failure.
func (c *cycle) placeCounted(st *state, r *request, shapes []api.NodeShape, end time.Time, honour bool) (*placement, failKind) {
	n := len(shapes)
	if n < r.countsNodes() {
		return nil, failCapacity
	}
	type cand struct {
		i, left, counted int
		m                uint64
	}
	var cs []cand
	for _, i := range c.nodesFor(r) {
		if bits.OnesCount64(st.free[i]) < int(shapes[0].GPUs) || !c.nodes[i].schedulable {
			continue
		}
		m, cpus, mem, gres := c.usable(st, i, end, honour)
		left, ok := c.fits(st, i, m, cpus, mem, gres, shapes[0], r)
		if !ok {
			continue
		}
		counted := 0
		for _, fc := range r.counts {
			if c.nodes[i].hasFeature(fc.Feature) {
				counted++
			}
		}
		cs = append(cs, cand{i: i, left: left, counted: counted, m: m})
	}
	if len(cs) < n {
		return nil, failCapacity
	}
	slices.SortStableFunc(cs, func(a, b cand) int {
		return cmp.Or(cmp.Compare(a.counted, b.counted), cmp.Compare(a.left, b.left))
	})
	holders := func(f string) int {
		k := 0
		for _, cd := range cs {
			if c.nodes[cd.i].hasFeature(f) {
				k++
			}
		}
		return k
	}
	counts := slices.Clone(r.counts)
	slices.SortStableFunc(counts, func(a, b api.FeatureCount) int { return cmp.Compare(holders(a.Feature), holders(b.Feature)) })
	taken := make([]bool, len(cs))
	var picked []int // indices into cs, in the order taken
	for _, fc := range counts {
		got := 0
		for k, cd := range cs {
			if got == int(fc.Nodes) {
				break
			}
			if !taken[k] && c.nodes[cd.i].hasFeature(fc.Feature) {
				taken[k] = true
				picked = append(picked, k)
				got++
			}
		}
		if got < int(fc.Nodes) {
			return nil, failCapacity
		}
	}
	for k := range cs {
		if len(picked) == n {
			break
		}
		if !taken[k] {
			taken[k] = true
			picked = append(picked, k)
		}
	}
	if len(picked) < n {
		return nil, failCapacity
	}
	p := &placement{}
	var leaves []int
	for x, k := range picked {
		cd := cs[k]
		if !slices.Contains(leaves, c.nodes[cd.i].leaf) {
			leaves = append(leaves, c.nodes[cd.i].leaf)
		}
		s := shapes[x]
		p.nodes = append(p.nodes, cd.i)
		p.masks = append(p.masks, c.chooseGPUs(cd.i, cd.m, int(s.GPUs), r.exclusive))
		p.shapes = append(p.shapes, s)
	}
	p.leaves = len(leaves)
	if r.switches > 0 && p.leaves > r.switches {
		return nil, failTopology
	}
	return p, failNone
}

// countsMet refuses a --constraint whose feature count (feature*N) more
// nodes ask for than in, the partition's nodes that meet the rest of the
// job's constraint, have the feature.
func countsMet(in []*api.Node, spec *api.JobSpec, part string) error {
	if spec.Constraint == "" {
		return nil
	}
	con, err := api.ParseConstraint(spec.Constraint)
	if err != nil {
		return fmt.Errorf("--constraint: %w", err)
	}
	for _, fc := range con.Counts() {
		have := 0
		for _, n := range in {
			if slices.Contains(n.AllFeatures(), fc.Feature) {
				have++
			}
		}
		if have < int(fc.Nodes) {
			return fmt.Errorf("--constraint=%s: %s*%d asks for %d nodes with feature %q but partition %q has %d", spec.Constraint, fc.Feature, fc.Nodes, fc.Nodes, fc.Feature, part, have)
		}
	}
	return nil
}
