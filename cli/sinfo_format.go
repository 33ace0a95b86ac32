package cli

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/loomhpc/loom/api"
)

// sinfoField is one %-letter of sinfo --format. Rows group the nodes that
// show the same values in every field but %D (their number) and %N (their
// names).
type sinfoField struct {
	title string
	value func(n *api.NodeInfo, part string) string
	// partValue, when set, shows the partition's own setting instead.
	partValue func(ps partitionSet, part string) string
	count     bool // %D
	names     bool // %N, %n
	part      bool // %P, %R: rows are per partition
}

var sinfoFields = map[byte]*sinfoField{
	'a': {title: "AVAIL", part: true, partValue: partitionSet.avail},
	'b': {title: "ACTIVE_FEATURES", value: nodeFeatures},
	'c': {title: "CPUS", value: func(n *api.NodeInfo, _ string) string { return strconv.FormatUint(uint64(n.GetNode().GetCpus()), 10) }},
	'C': {title: "CPUS(A/I/O/T)", value: func(n *api.NodeInfo, _ string) string {
		total, alloc := n.GetNode().GetCpus(), n.GetCpusAllocated()
		if !n.GetNode().Schedulable() {
			return fmt.Sprintf("%d/0/%d/%d", alloc, total-min(alloc, total), total)
		}
		return fmt.Sprintf("%d/%d/0/%d", alloc, total-min(alloc, total), total)
	}},
	'D': {title: "NODES", count: true},
	'E': {title: "REASON", value: func(n *api.NodeInfo, _ string) string { return orDefault(n.GetNode().GetReason(), "none") }},
	'f': {title: "AVAIL_FEATURES", value: nodeFeatures},
	'G': {title: "GRES", value: func(n *api.NodeInfo, _ string) string { return nodeGres(n, false) }},
	'l': {title: "TIMELIMIT", part: true, partValue: partitionSet.timeLimit},
	'm': {title: "MEMORY", value: func(n *api.NodeInfo, _ string) string { return strconv.FormatUint(n.GetNode().GetMemoryMb(), 10) }},
	'n': {title: "HOSTNAMES", names: true},
	'N': {title: "NODELIST", names: true},
	'P': {title: "PARTITION", part: true, partValue: partitionSet.label},
	'R': {title: "PARTITION", part: true, value: func(_ *api.NodeInfo, p string) string { return p }},
	't': {title: "STATE", value: func(n *api.NodeInfo, _ string) string { return nodeState(n).short }},
	'T': {title: "STATE", value: func(n *api.NodeInfo, _ string) string { return nodeState(n).long }},
}

// nodeFeatures is sinfo's %f: the node's features, or "(null)".
func nodeFeatures(n *api.NodeInfo, _ string) string {
	return null(strings.Join(n.GetNode().AllFeatures(), ","))
}

// sinfoPiece is literal text or one field of a sinfo format.
type sinfoPiece = formatPiece[sinfoField]

// parseSinfoFormat parses sinfo's --format: "%[.][WIDTH]LETTER" fields
// and literal text, "%%" for a percent sign. As Slurm's sinfo does, text
// before the first field is dropped.
func parseSinfoFormat(f string) ([]sinfoPiece, error) {
	if i := strings.IndexByte(f, '%'); i > 0 {
		f = f[i:]
	}
	return parsePercentFormat(f, sinfoFields, func(c byte) error {
		return fmt.Errorf("field %%%c is not supported (known: %%a %%b %%c %%C %%D %%E %%f %%G %%l %%m %%n %%N %%P %%R %%t %%T)", c)
	})
}

// writeSinfoFormat prints nodes in the format of pieces: one row per
// group of nodes that show the same values (per partition when a field
// shows it), or with -N one per node.
func writeSinfoFormat(e *env, ps partitionSet, nodes []*api.NodeInfo, pieces []sinfoPiece, o sinfoOpts) {
	perPart := slices.ContainsFunc(pieces, func(p sinfoPiece) bool { return p.field != nil && p.field.part })
	type group struct {
		first *api.NodeInfo
		part  string
		names []string
	}
	var groups []*group
	add := func(part string, n *api.NodeInfo) {
		if !o.nodeOriented {
			for _, g := range groups {
				if g.part == part && sameValues(pieces, g.first, n, part) {
					g.names = append(g.names, n.GetNode().GetName())
					return
				}
			}
		}
		groups = append(groups, &group{first: n, part: part, names: []string{n.GetNode().GetName()}})
	}
	if perPart {
		parts, byPart := ps.nodesByPartition(nodes, o.partitions)
		for _, p := range parts {
			for _, n := range byPart[p] {
				add(p, n)
			}
		}
	} else {
		for _, n := range nodes {
			add("", n)
		}
	}
	line := func(cell func(f *sinfoField) string) {
		b := renderPieces(pieces, cell)
		fmt.Fprintln(e.stdout, strings.TrimRight(b.String(), " "))
	}
	if !o.noHeader {
		line(func(f *sinfoField) string { return f.title })
	}
	cell := func(g *group, f *sinfoField) string {
		switch {
		case f.count:
			return strconv.Itoa(len(g.names))
		case f.names:
			return api.CompressHostlist(g.names)
		case f.partValue != nil:
			return f.partValue(ps, g.part)
		}
		return f.value(g.first, g.part)
	}
	if len(o.sort) > 0 {
		// Rows of every letter sorted on, the group's index last.
		var letters []byte
		for _, k := range o.sort {
			letters = append(letters, k.letter)
		}
		rows := make([][]string, len(groups))
		for i, g := range groups {
			for _, l := range letters {
				rows[i] = append(rows[i], cell(g, sinfoFields[l]))
			}
			rows[i] = append(rows[i], strconv.Itoa(i))
		}
		sortSinfoRows(rows, o.sort, func(l byte) int { return strings.IndexByte(string(letters), l) })
		sorted := make([]*group, len(groups))
		for i, r := range rows {
			k, _ := strconv.Atoi(r[len(r)-1])
			sorted[i] = groups[k]
		}
		groups = sorted
	}
	for _, g := range groups {
		line(func(f *sinfoField) string { return cell(g, f) })
	}
}

// sameValues reports whether nodes a and b show the same value in every
// grouping field of pieces.
func sameValues(pieces []sinfoPiece, a, b *api.NodeInfo, part string) bool {
	for _, p := range pieces {
		if p.field == nil || p.field.count || p.field.names || p.field.partValue != nil {
			continue
		}
		if p.field.value(a, part) != p.field.value(b, part) {
			return false
		}
	}
	return true
}
