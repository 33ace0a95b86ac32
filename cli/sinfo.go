package cli

import (
	"context"
	"fmt"
	"slices"
	"strconv"

	"github.com/loomhpc/loom/api"
)

const sinfoUsage = `Usage: sinfo [OPTIONS...]

Shows partitions and nodes, like Slurm's sinfo. Rows group the nodes of a
partition that share a state; -N prints one row per node.

Options:
`

type sinfoOpts struct {
	nodeOriented bool
	long         bool
	reasons      bool
	summarize    bool
	reservations bool // -T
	json         bool
	noHeader     bool
	partitions   []string
	states       []string
	nodes        []string
	format       string // -o/--format
	sort         []sinfoSortKey
	help         bool
}

func runSinfo(ctx context.Context, e *env, args []string) int {
	var o sinfoOpts
	opts := []*option{
		{long: "Node", short: 'N', arg: noArg, help: "one row per node", set: setBool(&o.nodeOriented, true)},
		{long: "long", short: 'l', arg: noArg, help: "more columns, GPUs (GRES) among them", set: setBool(&o.long, true)},
		{long: "list-reasons", short: 'R', arg: noArg, help: "why nodes are drained or down", set: setBool(&o.reasons, true)},
		{long: "summarize", short: 's', arg: noArg, help: "node counts per partition: allocated/idle/other/total", set: setBool(&o.summarize, true)},
		{long: "reservation", short: 'T', arg: noArg, help: "the advance reservations: name, state, start, end, duration, nodes", set: setBool(&o.reservations, true)},
		{long: "partition", short: 'p', arg: requiredArg, meta: "NAME[,NAME...]", help: "only these partitions", set: appendList(&o.partitions)},
		{long: "states", short: 't', arg: requiredArg, meta: "STATE[,STATE...]", help: "only nodes in these states (idle, mix, alloc, drain, down)", set: appendList(&o.states)},
		{long: "nodes", short: 'n', arg: requiredArg, meta: "HOSTLIST", help: "only these nodes, such as gpu[01-04]", set: func(v string) error {
			o.nodes = append(o.nodes, v) // a hostlist: its commas are its own
			return nil
		}},
		{long: "format", short: 'o', arg: requiredArg, meta: "FORMAT", help: "columns as %[.][WIDTH]LETTER fields: %P %a %l %D %t %T %N %f (features) %G %c %C %m %E", set: setString(&o.format)},
		{long: "sort", short: 'S', arg: requiredArg, meta: "FIELDS", help: "order rows by format letters, '-' for descending, '#P' for the configured partition order (as \"#P,-t\")", set: func(v string) error {
			var err error
			o.sort, err = parseSinfoSort(v)
			return err
		}},
		{long: "json", arg: noArg, help: "print the nodes as JSON (API objects)", set: setBool(&o.json, true)},
		{long: "consistent", arg: noArg, help: "read through the leader (linearizable) instead of any server", set: consistentRead(e)},
		{long: "noheader", short: 'h', arg: noArg, help: "no header line", set: setBool(&o.noHeader, true)},
		{long: "all", short: 'a', arg: noArg, set: func(string) error { return nil }},
		{long: "help", arg: noArg, help: "show this help", set: setBool(&o.help, true)},
		{long: "usage", arg: noArg, set: setBool(&o.help, true)},
	}
	pos, err := parseAndApply(opts, args)
	if err != nil {
		return e.fail(err)
	}
	if o.help {
		return printHelp(e, sinfoUsage, opts)
	}
	if len(pos) > 0 {
		return e.fail(&usageError{fmt.Sprintf("unexpected argument %q", pos[0])})
	}
	if o.reservations {
		return sinfoReservations(ctx, e, o.noHeader)
	}
	var pieces []sinfoPiece
	if o.format != "" {
		if pieces, err = parseSinfoFormat(o.format); err != nil {
			return e.fail(fmt.Errorf("--format=%s: %w", o.format, err))
		}
	}
	var only []string
	for _, expr := range o.nodes {
		names, err := api.ExpandHostlist(expr)
		if err != nil {
			return e.fail(fmt.Errorf("--nodes: %w", err))
		}
		only = append(only, names...)
	}
	return withClient(e, func(c *client) int {
		cfg, err := c.clusterConfig(ctx)
		if err != nil {
			return e.fail(err)
		}
		ps := newPartitionSet(cfg)
		resp, err := c.listNodes(ctx)
		if err != nil {
			return e.fail(err)
		}
		nodes := resp.GetNodes()[:0:0]
		for _, n := range resp.GetNodes() {
			if len(only) > 0 && !slices.Contains(only, n.GetNode().GetName()) {
				continue
			}
			if len(o.states) > 0 && !slices.ContainsFunc(o.states, func(s string) bool { return matchesNodeState(n, s) }) {
				continue
			}
			if len(o.partitions) > 0 && !slices.ContainsFunc(ps.of(n.GetNode()), func(p string) bool { return slices.Contains(o.partitions, p) }) {
				continue
			}
			nodes = append(nodes, n)
		}
		sortNodes(nodes)
		switch {
		case o.json:
			if err := writeJSON(e.stdout, &api.ListNodesResponse{Nodes: nodes, Index: resp.GetIndex()}); err != nil {
				return e.fail(err)
			}
		case pieces != nil:
			writeSinfoFormat(e, ps, nodes, pieces, o)
		case o.reasons:
			writeNodeReasons(e, nodes, o)
		case o.nodeOriented:
			writeNodeRows(e, ps, nodes, o)
		case o.summarize:
			writePartitionSummary(e, ps, nodes, o)
		default:
			writePartitionRows(e, ps, nodes, o)
		}
		return 0
	})
}

// writePartitionRows is sinfo's default view, "%9P %.5a %.10l %.6D %.6t
// %N": one row per partition and state (and GRES with -l); a configured
// partition with no node has one row of 0 nodes.
func writePartitionRows(e *env, ps partitionSet, nodes []*api.NodeInfo, o sinfoOpts) {
	parts, byPart := ps.nodesByPartition(nodes, o.partitions)
	cols := []column{{"PARTITION", -1, false}, {"AVAIL", 5, true}, {"TIMELIMIT", 10, true}, {"NODES", 6, true}, {"STATE", 6, true}, {"NODELIST", 0, false}}
	if o.long {
		cols = []column{{"PARTITION", -1, false}, {"AVAIL", 5, true}, {"TIMELIMIT", 10, true}, {"NODES", 6, true}, {"STATE", 11, true}, {"GRES", -1, false}, {"NODELIST", 0, false}}
	}
	var rows [][]string
	for _, p := range parts {
		type group struct {
			state nodeStateInfo
			gres  string
			names []string
		}
		var groups []*group
		for _, n := range byPart[p] {
			st := nodeState(n)
			gres := ""
			if o.long {
				gres = nodeGres(n, false)
			}
			i := slices.IndexFunc(groups, func(g *group) bool { return g.state == st && g.gres == gres })
			if i < 0 {
				groups = append(groups, &group{state: st, gres: gres})
				i = len(groups) - 1
			}
			groups[i].names = append(groups[i].names, n.GetNode().GetName())
		}
		slices.SortStableFunc(groups, func(a, b *group) int { return a.state.order - b.state.order })
		if len(groups) == 0 {
			rows = append(rows, []string{ps.label(p), ps.avail(p), ps.timeLimit(p), "0", "n/a"})
			if o.long {
				rows[len(rows)-1] = append(rows[len(rows)-1], "(null)")
			}
			rows[len(rows)-1] = append(rows[len(rows)-1], "")
		}
		for _, g := range groups {
			row := []string{ps.label(p), ps.avail(p), ps.timeLimit(p), strconv.Itoa(len(g.names))}
			if o.long {
				row = append(row, g.state.long, g.gres)
			} else {
				row = append(row, g.state.short)
			}
			rows = append(rows, append(row, api.CompressHostlist(g.names)))
		}
	}
	letters := "PalDtN"
	if o.long {
		letters = "PalDtGN"
	}
	sortSinfoRows(rows, o.sort, columnOf(letters))
	writeTable(e.stdout, cols, rows, !o.noHeader)
}

// writePartitionSummary is sinfo -s: NODES(A/I/O/T) per partition.
func writePartitionSummary(e *env, ps partitionSet, nodes []*api.NodeInfo, o sinfoOpts) {
	parts, byPart := ps.nodesByPartition(nodes, o.partitions)
	cols := []column{{"PARTITION", -1, false}, {"AVAIL", 5, true}, {"TIMELIMIT", 10, true}, {"NODES(A/I/O/T)", 15, true}, {"NODELIST", 0, false}}
	var rows [][]string
	for _, p := range parts {
		var a, i, other int
		var names []string
		for _, n := range byPart[p] {
			switch n.GetState() {
			case api.NodeState_MIXED, api.NodeState_ALLOCATED:
				a++
			case api.NodeState_IDLE:
				i++
			default:
				other++
			}
			names = append(names, n.GetNode().GetName())
		}
		rows = append(rows, []string{ps.label(p), ps.avail(p), ps.timeLimit(p),
			fmt.Sprintf("%d/%d/%d/%d", a, i, other, len(names)), api.CompressHostlist(names)})
	}
	sortSinfoRows(rows, o.sort, columnOf("PalFN"))
	writeTable(e.stdout, cols, rows, !o.noHeader)
}

// writeNodeRows is sinfo -N ("%#N %.6D %#P %6t"), and with -l the node's
// CPUs, memory, GPUs and reason.
func writeNodeRows(e *env, ps partitionSet, nodes []*api.NodeInfo, o sinfoOpts) {
	cols := []column{{"NODELIST", -1, false}, {"NODES", 6, true}, {"PARTITION", -1, true}, {"STATE", 6, false}}
	if o.long {
		cols = []column{{"NODELIST", -1, false}, {"NODES", 6, true}, {"PARTITION", -1, true}, {"STATE", 11, true},
			{"CPUS(A/T)", 10, true}, {"MEMORY", 8, true}, {"GRES", -1, false}, {"GRES_USED", -1, false}, {"REASON", 0, false}}
	}
	var rows [][]string
	for _, n := range nodes {
		for _, p := range ps.of(n.GetNode()) {
			if len(o.partitions) > 0 && !slices.Contains(o.partitions, p) {
				continue
			}
			st := nodeState(n)
			if !o.long {
				rows = append(rows, []string{n.GetNode().GetName(), "1", ps.label(p), st.short})
				continue
			}
			rows = append(rows, []string{n.GetNode().GetName(), "1", ps.label(p), st.long,
				fmt.Sprintf("%d/%d", n.GetCpusAllocated(), n.GetNode().GetCpus()),
				strconv.FormatUint(n.GetNode().GetMemoryMb(), 10),
				nodeGres(n, false), nodeGres(n, true), orDefault(n.GetNode().GetReason(), "none")})
		}
	}
	sortSinfoRows(rows, o.sort, columnOf("NDPtCmG_E"))
	writeTable(e.stdout, cols, rows, !o.noHeader)
}

// writeNodeReasons is sinfo -R ("%20E %9u %19H %N"): drained and down
// nodes grouped by reason. Loom does not record who set a reason, so USER
// is "n/a".
func writeNodeReasons(e *env, nodes []*api.NodeInfo, o sinfoOpts) {
	cols := []column{{"REASON", 20, false}, {"USER", 9, false}, {"TIMESTAMP", 19, false}, {"NODELIST", 0, false}}
	type group struct {
		reason, stamp string
		names         []string
	}
	var groups []*group
	for _, n := range nodes {
		st := n.GetState()
		if st != api.NodeState_DRAIN && st != api.NodeState_DOWN {
			continue
		}
		reason := orDefault(n.GetNode().GetReason(), "Not responding")
		stamp := slurmTimestamp(n.GetNode().GetUpdatedUnixMs(), e.loc)
		i := slices.IndexFunc(groups, func(g *group) bool { return g.reason == reason && g.stamp == stamp })
		if i < 0 {
			groups = append(groups, &group{reason: reason, stamp: stamp})
			i = len(groups) - 1
		}
		groups[i].names = append(groups[i].names, n.GetNode().GetName())
	}
	rows := make([][]string, len(groups))
	for i, g := range groups {
		rows[i] = []string{g.reason, "n/a", g.stamp, api.CompressHostlist(g.names)}
	}
	writeTable(e.stdout, cols, rows, !o.noHeader)
}
