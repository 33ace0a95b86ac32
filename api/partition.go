package api

import (
	"slices"
	"strings"
	"sync"

	"google.golang.org/protobuf/proto"
)

// Partition states, as PartitionConfig.state and Slurm's State= spell
// them.
const (
	PartitionUp       = "UP"
	PartitionDown     = "DOWN"
	PartitionDrain    = "DRAIN"
	PartitionInactive = "INACTIVE"
)

// PartitionState returns p's state in upper case, UP when unset.
func (p *PartitionConfig) PartitionState() string {
	if s := strings.ToUpper(p.GetState()); s != "" {
		return s
	}
	return PartitionUp
}

// Runs reports whether jobs of p may start (UP or DRAIN).
func (p *PartitionConfig) Runs() bool {
	s := p.PartitionState()
	return s == PartitionUp || s == PartitionDrain
}

// PreemptOff reports whether p's jobs are never preempted (PreemptMode=OFF).
func (p *PartitionConfig) PreemptOff() bool {
	return strings.EqualFold(p.GetPreemptMode(), "OFF")
}

// PartitionTable answers which nodes serve which partition under the
// cluster's [[partition]] tables, with each table's hostlist expanded
// once. A nil table (no partitions configured) gives the behaviour of
// agents' --partitions alone: Node.InPartition.
type PartitionTable struct {
	defs   []*PartitionConfig
	byName map[string]*PartitionConfig
	hosts  map[string]map[string]bool // partition -> its nodes hostlist, expanded
}

// NewPartitionTable returns the table for defs, or nil when defs is empty.
// A hostlist that does not parse selects no node (the configuration was
// validated when it was loaded; a replica must not fail on it).
func NewPartitionTable(defs []*PartitionConfig) *PartitionTable {
	if len(defs) == 0 {
		return nil
	}
	t := &PartitionTable{defs: defs, byName: make(map[string]*PartitionConfig, len(defs)), hosts: make(map[string]map[string]bool, len(defs))}
	for _, d := range defs {
		if _, dup := t.byName[d.GetName()]; !dup {
			t.byName[d.GetName()] = d
		}
		names, _ := ExpandHostlist(d.GetNodes())
		set := make(map[string]bool, len(names))
		for _, n := range names {
			set[n] = true
		}
		t.hosts[d.GetName()] = set
	}
	return t
}

// lastTable remembers the partition table of the configuration last asked
// about: a configuration changes rarely, submits and cycles often.
var lastTable struct {
	sync.Mutex
	config *ClusterConfig
	table  *PartitionTable
}

// PartitionsOf returns the partition table of cfg, or nil when cfg is nil
// or defines no partitions. cfg must not change afterwards (replicated
// configurations never do).
func PartitionsOf(cfg *ClusterConfig) *PartitionTable {
	if len(cfg.GetPartitions()) == 0 {
		return nil
	}
	lastTable.Lock()
	defer lastTable.Unlock()
	if lastTable.config != cfg {
		lastTable.config, lastTable.table = cfg, NewPartitionTable(cfg.GetPartitions())
	}
	return lastTable.table
}

// Defs returns the partition definitions, in configuration order.
func (t *PartitionTable) Defs() []*PartitionConfig {
	if t == nil {
		return nil
	}
	return t.defs
}

// Get returns the definition of partition name, or nil.
func (t *PartitionTable) Get(name string) *PartitionConfig {
	if t == nil {
		return nil
	}
	return t.byName[name]
}

// Default returns the partition jobs that name none go to: the one marked
// default, or nil when none is.
func (t *PartitionTable) Default() *PartitionConfig {
	if t == nil {
		return nil
	}
	for _, d := range t.defs {
		if d.GetDefault() {
			return d
		}
	}
	return nil
}

// Names returns the partitions' names, in configuration order.
func (t *PartitionTable) Names() []string {
	var out []string
	for _, d := range t.Defs() {
		out = append(out, d.GetName())
	}
	return out
}

// Has reports whether node n serves partition p: its agent names p, or
// p's nodes hostlist contains it, or it has all of p's features (a
// partition with neither takes every node). With no table it is
// n.InPartition(p); a partition the table does not define has only the
// nodes whose agents name it.
func (t *PartitionTable) Has(n *Node, p string) bool {
	if t == nil {
		return n.InPartition(p)
	}
	if slices.Contains(n.GetPartitions(), p) {
		return true
	}
	d := t.Get(p)
	if d == nil {
		return false
	}
	if d.GetNodes() == "" && len(d.GetFeatures()) == 0 {
		return true
	}
	if t.hosts[p][n.GetName()] {
		return true
	}
	if len(d.GetFeatures()) == 0 {
		return false
	}
	have := n.AllFeatures()
	for _, f := range d.GetFeatures() {
		if !slices.ContainsFunc(have, func(h string) bool { return strings.EqualFold(h, f) }) {
			return false
		}
	}
	return true
}

// Of returns the partitions node n is in: with a table, the configured
// ones that have it, in configuration order; without, those its agent
// names, else DefaultPartition.
func (t *PartitionTable) Of(n *Node) []string {
	if t == nil {
		if len(n.GetPartitions()) == 0 {
			return []string{DefaultPartition}
		}
		return n.GetPartitions()
	}
	var out []string
	for _, d := range t.defs {
		if t.Has(n, d.GetName()) {
			out = append(out, d.GetName())
		}
	}
	return out
}

// SubmitCaller is who submits, as far as partition limits care.
type SubmitCaller struct {
	// User is the submitter's name: the account of a job that gives no
	// --account, as fair share charges it.
	User string
	// InGroup reports whether the caller (as the connection proves it) is
	// in the named group; nil skips AllowGroups: the FSM, which has no
	// group database, leaves that check to the server.
	InGroup func(group string) bool
}

// ApplyPartition fixes spec's partition and the defaults it gives, and
// checks the partition's limits, at submit: the partition (the default
// one when spec names none), its DefaultTime (else its MaxTime, as Slurm
// does), QoS and DefMemPerCPU/DefMemPerGPU where spec gives none, and its
// private_tmp and allow_swap in place of any the request gives. It
// refuses a partition that is not defined, DRAIN or INACTIVE, a time limit
// over MaxTime (Slurm's EnforcePartLimits=ALL), more nodes than MaxNodes,
// an account or QoS the partition does not allow, and a caller outside
// AllowGroups. What it returns is a changed copy; spec is never changed.
// With no partitions configured it returns spec as it is (less any
// private_tmp or allow_swap), refusing only a list of partitions.
func (t *PartitionTable) ApplyPartition(spec *JobSpec, who SubmitCaller) (*JobSpec, error) {
	name := spec.GetPartition()
	if strings.Contains(name, ",") {
		return nil, fieldErr("--partition="+name, "a job may name one partition only; submit to each separately")
	}
	if t == nil {
		if spec.PrivateTmp != nil || spec.AllowSwap != nil {
			spec = proto.Clone(spec).(*JobSpec)
			spec.PrivateTmp, spec.AllowSwap = nil, nil
		}
		return spec, nil
	}
	var d *PartitionConfig
	if name == "" {
		if d = t.Default(); d == nil {
			return nil, fieldErr("--partition", "no partition given and none is the default; name one of %s", strings.Join(t.Names(), ", "))
		}
	} else if d = t.Get(name); d == nil {
		return nil, fieldErr("--partition="+name, "no such partition; defined are %s", strings.Join(t.Names(), ", "))
	}
	field := "--partition=" + d.GetName()
	switch st := d.PartitionState(); st {
	case PartitionDrain, PartitionInactive:
		return nil, fieldErr(field, "partition is %s and takes no new jobs", st)
	}
	if g := d.GetAllowGroups(); len(g) > 0 && who.InGroup != nil && !slices.Contains(g, "ALL") && !slices.ContainsFunc(g, who.InGroup) {
		return nil, fieldErr(field, "none of your groups may use it (AllowGroups=%s)", strings.Join(d.GetAllowGroups(), ","))
	}
	out := proto.Clone(spec).(*JobSpec)
	out.Partition = d.GetName()
	t.StampIsolation(out)
	if out.Qos == "" {
		out.Qos = d.GetQos()
	}
	account := out.Account
	if account == "" {
		account = who.User
	}
	if l := d.GetAllowAccounts(); len(l) > 0 && !slices.Contains(l, "ALL") && !slices.Contains(l, account) {
		return nil, fieldErr(field, "account %q may not use it (AllowAccounts=%s; give one with --account)", account, strings.Join(l, ","))
	}
	if slices.Contains(d.GetDenyAccounts(), account) {
		return nil, fieldErr(field, "account %q may not use it (DenyAccounts=%s)", account, strings.Join(d.GetDenyAccounts(), ","))
	}
	if l := d.GetAllowQos(); len(l) > 0 && !slices.Contains(l, "ALL") && !slices.Contains(l, qosOrNormal(out.Qos)) {
		return nil, fieldErr(field, "QoS %q may not use it (AllowQos=%s)", qosOrNormal(out.Qos), strings.Join(l, ","))
	}
	if m := d.GetMaxNodes(); m > 0 {
		if lo, _ := out.NodeRange(); lo > m {
			return nil, fieldErr(field, "the job needs at least %d nodes; MaxNodes=%d", lo, m)
		}
	}
	if out.TimeLimitS == 0 {
		out.TimeLimitS = d.GetDefaultTimeS()
		if out.TimeLimitS == 0 {
			out.TimeLimitS = d.GetMaxTimeS()
		}
	}
	if m := d.GetMaxTimeS(); m > 0 && (out.TimeLimitS < 0 || out.TimeLimitS > m) {
		asked := "UNLIMITED"
		if out.TimeLimitS > 0 {
			asked = FormatSlurmDuration(out.TimeLimitS)
		}
		return nil, fieldErr("--time="+asked, "over partition %s's MaxTime=%s", d.GetName(), FormatSlurmDuration(m))
	}
	if out.MemPerNodeMb == 0 && out.MemPerCpuMb == 0 && out.MemPerGpuMb == 0 {
		if d.GetDefMemPerGpuMb() > 0 && (out.Gpus != 0 || out.GpusPerNode != 0 || out.GpusPerTask != 0) {
			out.MemPerGpuMb = d.GetDefMemPerGpuMb()
		} else if d.GetDefMemPerCpuMb() > 0 {
			out.MemPerCpuMb = d.GetDefMemPerCpuMb()
		}
	}
	return out, nil
}

// qosOrNormal is the QoS a job runs under: as asked, else Slurm's normal.
func qosOrNormal(q string) string {
	if q == "" {
		return "normal"
	}
	return q
}

// StampIsolation sets spec's private_tmp and allow_swap to those of its
// partition (unset where the partition sets none, or is not defined):
// only the partition says how a job is isolated, so a request's own
// values are dropped. The FSM calls it when a job's partition is fixed:
// at submit and when a pending job moves to another.
func (t *PartitionTable) StampIsolation(spec *JobSpec) {
	spec.PrivateTmp, spec.AllowSwap = nil, nil
	if t == nil {
		return
	}
	if d := t.Get(spec.GetPartition()); d != nil {
		spec.PrivateTmp, spec.AllowSwap = copyBool(d.PrivateTmp), copyBool(d.AllowSwap)
	}
}

// copyBool returns a copy of an optional field's value, so a spec never
// shares one with the configuration.
func copyBool(b *bool) *bool {
	if b == nil {
		return nil
	}
	return proto.Bool(*b)
}
