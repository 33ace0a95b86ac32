package cli

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/loomhpc/loom/api"
	"github.com/loomhpc/loom/api/apiclient"
	"github.com/loomhpc/loom/rpcclient"
)

// clusterConfig calls Operator.GetConfig: the replicated configuration, or
// nil when none was ever set or the server predates it.
func (c *client) clusterConfig(ctx context.Context) (*api.ClusterConfig, error) {
	var resp *api.GetConfigResponse
	err := c.do(ctx, true, func(ctx context.Context, cc *rpcclient.Conn) error {
		var err error
		resp, err = apiclient.NewOperatorClient(cc).GetConfig(ctx, &api.GetConfigRequest{})
		return err
	})
	if rpcclient.CodeOf(err) == rpcclient.Unimplemented {
		return nil, nil
	}
	return resp.GetConfig(), err
}

// partitionSet is the partitions as sinfo and scontrol show them: the
// configured ones ([[partition]] in loom.toml), in their order, or with
// none configured the names agents give their nodes.
type partitionSet struct {
	table *api.PartitionTable // nil: none configured
}

func newPartitionSet(cfg *api.ClusterConfig) partitionSet {
	return partitionSet{table: api.NewPartitionTable(cfg.GetPartitions())}
}

// of returns the partitions node n is in.
func (ps partitionSet) of(n *api.Node) []string { return ps.table.Of(n) }

// nodesByPartition lists the partitions shown (only those in only, when
// given) and the nodes of each. Configured partitions are listed in
// configuration order, even those with no node; otherwise the default
// comes first, then the others by name.
func (ps partitionSet) nodesByPartition(nodes []*api.NodeInfo, only []string) ([]string, map[string][]*api.NodeInfo) {
	byPart := map[string][]*api.NodeInfo{}
	var parts []string
	if ps.table != nil {
		for _, p := range ps.table.Names() {
			if len(only) == 0 || slices.Contains(only, p) {
				parts = append(parts, p)
			}
		}
	}
	for _, n := range nodes {
		for _, p := range ps.of(n.GetNode()) {
			if len(only) > 0 && !slices.Contains(only, p) {
				continue
			}
			if _, ok := byPart[p]; !ok && ps.table == nil {
				parts = append(parts, p)
			}
			byPart[p] = append(byPart[p], n)
		}
	}
	if ps.table == nil {
		sortPartitions(parts)
	}
	return parts, byPart
}

// label is sinfo's %P: the name, with '*' on the default partition.
func (ps partitionSet) label(p string) string {
	if ps.table == nil {
		return partitionLabel(p)
	}
	if d := ps.table.Default(); d != nil && d.GetName() == p {
		return p + "*"
	}
	return p
}

// avail is sinfo's %a: up, down, drain or inact.
func (ps partitionSet) avail(p string) string {
	d := ps.table.Get(p)
	if d == nil {
		return "up"
	}
	if s := d.PartitionState(); s != api.PartitionInactive {
		return strings.ToLower(s)
	}
	return "inact"
}

// timeLimit is sinfo's %l: the partition's MaxTime, "infinite" without
// one, "n/a" when no partitions are configured.
func (ps partitionSet) timeLimit(p string) string {
	if ps.table == nil {
		return "n/a"
	}
	if m := ps.table.Get(p).GetMaxTimeS(); m > 0 {
		return api.FormatSlurmDuration(m)
	}
	return "infinite"
}

// showPartitions is scontrol show partition [NAME]: the configured
// partitions as Slurm prints them, with their nodes and CPUs counted from
// the nodes registered now.
func showPartitions(ctx context.Context, e *env, c *client, rest []string, o scontrolOpts) int {
	cfg, err := c.clusterConfig(ctx)
	if err != nil {
		return e.fail(err)
	}
	resp, err := c.listNodes(ctx)
	if err != nil {
		return e.fail(err)
	}
	ps := newPartitionSet(cfg)
	parts, byPart := ps.nodesByPartition(resp.GetNodes(), rest)
	if len(rest) == 1 && len(parts) == 0 {
		return e.errorf("Partition %s not found", rest[0])
	}
	if len(parts) == 0 {
		fmt.Fprintln(e.stdout, "No partitions in the system")
		return 0
	}
	for _, p := range parts {
		d := ps.table.Get(p)
		if d == nil {
			d = &api.PartitionConfig{Name: p, Default: p == api.DefaultPartition}
		}
		var names []string
		var cpus uint64
		for _, n := range byPart[p] {
			names = append(names, n.GetNode().GetName())
			cpus += uint64(n.GetNode().GetCpus())
		}
		partitionRecord(d, names, cpus).write(e.stdout, o.oneLiner)
	}
	return 0
}

// partitionRecord is one partition in scontrol's layout.
func partitionRecord(d *api.PartitionConfig, names []string, cpus uint64) *keyValues {
	all := func(l []string) string {
		if len(l) == 0 {
			return "ALL"
		}
		return strings.Join(l, ",")
	}
	yes := func(b bool) string {
		if b {
			return "YES"
		}
		return "NO"
	}
	limit := func(s int64, none string) string {
		if s <= 0 {
			return none
		}
		return clockDuration(s)
	}
	count := func(n uint64) string {
		if n == 0 {
			return "UNLIMITED"
		}
		return strconv.FormatUint(n, 10)
	}
	kv := &keyValues{}
	kv.line("PartitionName", d.GetName())
	accounts := []string{"AllowAccounts", all(d.GetAllowAccounts())}
	if len(d.GetDenyAccounts()) > 0 && len(d.GetAllowAccounts()) == 0 {
		accounts = []string{"DenyAccounts", strings.Join(d.GetDenyAccounts(), ",")}
	}
	kv.line(append(append([]string{"AllowGroups", all(d.GetAllowGroups())}, accounts...), "AllowQos", all(d.GetAllowQos()))...)
	kv.line("AllocNodes", "ALL", "Default", yes(d.GetDefault()), "QoS", orDefault(d.GetQos(), "N/A"))
	kv.line("DefaultTime", limit(d.GetDefaultTimeS(), "NONE"), "DisableRootJobs", "NO", "ExclusiveUser", "NO", "GraceTime", "0", "Hidden", "NO")
	kv.line("MaxNodes", count(uint64(d.GetMaxNodes())), "MaxTime", limit(d.GetMaxTimeS(), "UNLIMITED"), "MinNodes", "0", "LLN", "NO", "MaxCPUsPerNode", "UNLIMITED")
	kv.line("Nodes", null(api.CompressHostlist(names)))
	kv.line("PriorityJobFactor", strconv.FormatUint(uint64(max(d.GetPriorityJobFactor(), 1)), 10),
		"PriorityTier", strconv.FormatUint(uint64(max(d.GetPriorityTier(), 1)), 10), "RootOnly", "NO", "ReqResv", "NO", "OverSubscribe", "NO")
	kv.line("OverTimeLimit", "NONE", "PreemptMode", strings.ToUpper(orDefault(d.GetPreemptMode(), "REQUEUE")))
	kv.line("State", d.PartitionState(), "TotalCPUs", strconv.FormatUint(cpus, 10), "TotalNodes", strconv.Itoa(len(names)),
		"SelectTypeParameters", "NONE")
	kv.line("JobDefaults", "(null)")
	switch {
	case d.GetDefMemPerGpuMb() > 0 && d.GetDefMemPerCpuMb() > 0:
		kv.line("DefMemPerCPU", strconv.FormatUint(d.GetDefMemPerCpuMb(), 10), "DefMemPerGPU", strconv.FormatUint(d.GetDefMemPerGpuMb(), 10), "MaxMemPerNode", "UNLIMITED")
	case d.GetDefMemPerGpuMb() > 0:
		kv.line("DefMemPerGPU", strconv.FormatUint(d.GetDefMemPerGpuMb(), 10), "MaxMemPerNode", "UNLIMITED")
	case d.GetDefMemPerCpuMb() > 0:
		kv.line("DefMemPerCPU", strconv.FormatUint(d.GetDefMemPerCpuMb(), 10), "MaxMemPerNode", "UNLIMITED")
	default:
		kv.line("DefMemPerNode", "UNLIMITED", "MaxMemPerNode", "UNLIMITED")
	}
	return kv
}
