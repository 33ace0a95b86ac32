package scheduler

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/loomhpc/loom/api"
	"google.golang.org/protobuf/proto"
)

// Feasible reports whether spec could ever run on nodes (all of them
// empty and up), with an error that says what cannot be met.
func Feasible(nodes []*api.Node, spec *api.JobSpec) error {
	return FeasibleIn(nodes, nil, spec)
}

// FeasibleIn is Feasible with the partitions' members as parts says (nil:
// as the agents name them).
func FeasibleIn(nodes []*api.Node, parts *api.PartitionTable, spec *api.JobSpec) error {
	part := spec.PartitionOf()
	if err := knownGres(nodes, spec); err != nil {
		return err
	}
	var in []*api.Node
	for _, n := range nodes {
		if parts.Has(n, part) {
			in = append(in, n)
		}
	}
	if len(in) == 0 {
		return fmt.Errorf("partition %q has no nodes", part)
	}
	outside := ""
	if len(spec.Nodelist) > 0 {
		for _, name := range spec.Nodelist {
			if !slices.ContainsFunc(in, func(n *api.Node) bool { return n.Name == name }) {
				return fmt.Errorf("--nodelist: no node %s in partition %q", name, part)
			}
		}
		in = slices.DeleteFunc(in, func(n *api.Node) bool { return !slices.Contains(spec.Nodelist, n.Name) })
		outside = " in --nodelist"
	}
	if len(spec.Exclude) > 0 {
		in = slices.DeleteFunc(in, func(n *api.Node) bool { return slices.Contains(spec.Exclude, n.Name) })
		if len(in) == 0 {
			return fmt.Errorf("--exclude leaves no node of partition %q", part)
		}
		outside = " outside --exclude"
	}
	if spec.Constraint != "" || spec.GpuType != "" {
		var err error
		if in, err = withFeatures(in, spec, part); err != nil {
			return err
		}
		outside += " with the features asked for"
		if err := countsMet(in, spec, part); err != nil {
			return err
		}
	}
	if why := gresMisfit(in, spec.GresPerNode, part); why != "" {
		return fmt.Errorf("requested node configuration is not available: %s", why)
	}
	lo, hi := spec.NodeRange()
	if int(lo) > len(in) {
		return fmt.Errorf("--nodes=%d: partition %q has only %d nodes%s", lo, part, len(in), outside)
	}
	// Capacity that is down or drained today may be back tomorrow: the
	// question is whether the job could ever run, so every node counts.
	up := make([]*api.Node, len(in))
	for i, n := range in {
		up[i] = &api.Node{Name: n.Name, Cpus: n.Cpus, MemoryMb: n.MemoryMb, Topology: n.Topology,
			Partitions: n.Partitions, PortMin: n.PortMin, PortMax: n.PortMax, Features: n.Features,
			LeafSwitch: n.LeafSwitch, SpineSwitch: n.SpineSwitch, Gres: n.Gres}
	}
	c := newCycle(&View{Nodes: up, Partitions: parts.Defs()}, time.Unix(0, 0), &Config{})
	loose := proto.Clone(spec).(*api.JobSpec)
	loose.Switches = 0
	j := &api.Job{Spec: loose}
	r := c.request(j)
	var why string
	for n := lo; n <= hi && int(n) <= len(in); n++ {
		shapes, ok := spec.Layout(n)
		if !ok {
			why = fmt.Sprintf("%d tasks cannot be spread over %d nodes", spec.TotalTasks(n), n)
			continue
		}
		why = ""
		for _, s := range shapes {
			count := 0
			for i := range c.nodes {
				if _, ok := c.fits(c.st, i, c.st.free[i], c.st.cpus[i], c.st.mem[i], c.gresAt(c.st, i), s, r); ok {
					count++
				}
			}
			if count == 0 {
				why = shapeMisfit(in, s)
				break
			}
		}
		if why == "" {
			if p, _ := c.placeOn(c.st, r, forever, false); p != nil {
				return nil
			}
			why = fmt.Sprintf("no %d nodes of partition %q can hold the gang together", n, part)
		}
	}
	return fmt.Errorf("requested node configuration is not available: %s", why)
}

// withFeatures returns the nodes that meet spec's --constraint (any item of
// a matching OR) and GPU type, or an error naming what no node has.
func withFeatures(in []*api.Node, spec *api.JobSpec, part string) ([]*api.Node, error) {
	c := &cycle{}
	r := &request{choice: -1}
	if spec.Constraint != "" {
		con, err := api.ParseConstraint(spec.Constraint)
		if err != nil {
			return nil, fmt.Errorf("--constraint: %w", err)
		}
		r.constraint = con
	}
	if spec.Gpus != 0 || spec.GpusPerNode != 0 || spec.GpusPerTask != 0 {
		r.gpuType = spec.GpuType
	}
	out := make([]*api.Node, 0, len(in))
	for _, n := range in {
		c.nodes = []*nodeInfo{{node: n}}
		if c.hasFeatures(r, 0) {
			out = append(out, n)
		}
	}
	if len(out) > 0 {
		return out, nil
	}
	var have []string
	for _, n := range in {
		for _, f := range n.AllFeatures() {
			if !slices.Contains(have, f) {
				have = append(have, f)
			}
		}
	}
	slices.Sort(have)
	list := "none"
	if len(have) > 0 {
		list = strings.Join(have, ",")
	}
	if r.constraint != nil {
		return nil, fmt.Errorf("--constraint=%s: no node of partition %q has these features (its nodes have: %s)", spec.Constraint, part, list)
	}
	return nil, fmt.Errorf("GPU type %q: no node of partition %q has only GPUs of this type (its nodes have: %s)", spec.GpuType, part, list)
}

// knownGres refuses a --gres naming a generic resource no node has, and
// lists those the cluster has.
func knownGres(nodes []*api.Node, spec *api.JobSpec) error {
	if len(spec.GresPerNode) == 0 {
		return nil
	}
	have := map[string]bool{}
	for _, n := range nodes {
		for g := range n.Gres {
			have[g] = true
		}
	}
	for _, g := range slices.Sorted(maps.Keys(spec.GresPerNode)) {
		if !have[g] {
			list := "none but gpu"
			if len(have) > 0 {
				list = strings.Join(slices.Sorted(maps.Keys(have)), ",")
			}
			return fmt.Errorf("--gres=%s: no node has generic resource %q (the cluster has: %s)", api.FormatGres(spec.GresPerNode), g, list)
		}
	}
	return nil
}

// gresMisfit says which generic resource no node holds enough of, or "".
func gresMisfit(nodes []*api.Node, gres map[string]uint64, part string) string {
	for _, g := range slices.Sorted(maps.Keys(gres)) {
		most := uint64(0)
		for _, n := range nodes {
			most = max(most, n.Gres[g])
		}
		if gres[g] > most {
			return fmt.Sprintf("a node needs %s:%d but the most any node of partition %q has is %d", g, gres[g], part, most)
		}
	}
	return ""
}

func shapeMisfit(nodes []*api.Node, s api.NodeShape) string {
	var gpus, cpus uint32
	var mem uint64
	for _, n := range nodes {
		h := uint32(0)
		for _, g := range n.GetTopology().GetGpus() {
			if g.Healthy {
				h++
			}
		}
		gpus, cpus, mem = max(gpus, h), max(cpus, n.Cpus), max(mem, n.MemoryMb)
	}
	switch {
	case s.GPUs > gpus:
		return fmt.Sprintf("a node needs %d GPUs but the largest node has %d", s.GPUs, gpus)
	case s.CPUs > cpus:
		return fmt.Sprintf("a node needs %d CPUs but the largest node has %d", s.CPUs, cpus)
	case mem != 0 && s.MemMB > mem:
		return fmt.Sprintf("a node needs %d MB of memory but the largest node has %d MB", s.MemMB, mem)
	}
	return "no single node has all of the GPUs, CPUs, memory, generic resources and ports one node of the gang needs"
}
