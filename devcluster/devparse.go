package devcluster

import (
	"fmt"
	"strings"

	"github.com/BurntSushi/toml"

	"github.com/loomhpc/loom/api"
)

// devParse reads the tables of a loom.toml that give a dev cluster its
// shape: [[partition]], [[qos]] (name, priority, preempt) and
// [[topology.switch]]. It is the fallback of ReadConfig for callers that
// pass no parser of their own; loom dev passes the servers' (clusterconf),
// which reads and checks every table.
func devParse(path, text string) (*api.ClusterConfig, error) {
	var doc struct {
		Partition []struct {
			Name              string   `toml:"name"`
			Nodes             string   `toml:"nodes"`
			Features          []string `toml:"features"`
			Default           bool     `toml:"default"`
			MaxTime           string   `toml:"max_time"`
			DefaultTime       string   `toml:"default_time"`
			State             string   `toml:"state"`
			AllowGroups       []string `toml:"allow_groups"`
			AllowAccounts     []string `toml:"allow_accounts"`
			DenyAccounts      []string `toml:"deny_accounts"`
			AllowQOS          []string `toml:"allow_qos"`
			PriorityTier      uint32   `toml:"priority_tier"`
			PriorityJobFactor uint32   `toml:"priority_job_factor"`
			PreemptMode       string   `toml:"preempt_mode"`
			MaxNodes          uint32   `toml:"max_nodes"`
			DefMemPerCPU      uint64   `toml:"def_mem_per_cpu"`
			DefMemPerGPU      uint64   `toml:"def_mem_per_gpu"`
			QOS               string   `toml:"qos"`
		} `toml:"partition"`
		QOS []struct {
			Name     string   `toml:"name"`
			Priority uint32   `toml:"priority"`
			Preempt  []string `toml:"preempt"`
		} `toml:"qos"`
		Topology struct {
			Switch []struct {
				Name     string `toml:"name"`
				Nodes    string `toml:"nodes"`
				Switches string `toml:"switches"`
			} `toml:"switch"`
		} `toml:"topology"`
	}
	if _, err := toml.Decode(text, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	c := &api.ClusterConfig{Source: path}
	for _, q := range doc.QOS {
		c.Qos = append(c.Qos, &api.QOSConfig{Name: q.Name, Priority: q.Priority, Preempt: q.Preempt})
	}
	limit := func(name, key, v string) (int64, error) {
		if v == "" {
			return 0, nil
		}
		s, err := api.ParseSlurmTime(v)
		if err != nil {
			return 0, fmt.Errorf("%s: [[partition]] %q: %s: %w", path, name, key, err)
		}
		return max(s, 0), nil
	}
	for _, p := range doc.Partition {
		if p.Name == "" {
			return nil, fmt.Errorf("%s: every [[partition]] needs a name", path)
		}
		if _, err := api.ExpandHostlist(p.Nodes); err != nil {
			return nil, fmt.Errorf("%s: [[partition]] %q: nodes: %w", path, p.Name, err)
		}
		maxTime, err := limit(p.Name, "max_time", p.MaxTime)
		if err != nil {
			return nil, err
		}
		defTime, err := limit(p.Name, "default_time", p.DefaultTime)
		if err != nil {
			return nil, err
		}
		c.Partitions = append(c.Partitions, &api.PartitionConfig{
			Name: p.Name, Nodes: p.Nodes, Features: p.Features, Default: p.Default, MaxTimeS: maxTime, DefaultTimeS: defTime,
			State: strings.ToUpper(p.State), AllowGroups: p.AllowGroups, AllowAccounts: p.AllowAccounts, DenyAccounts: p.DenyAccounts,
			AllowQos: p.AllowQOS, PriorityTier: p.PriorityTier, PriorityJobFactor: p.PriorityJobFactor,
			PreemptMode: strings.ToUpper(p.PreemptMode), MaxNodes: p.MaxNodes, DefMemPerCpuMb: p.DefMemPerCPU,
			DefMemPerGpuMb: p.DefMemPerGPU, Qos: p.QOS,
		})
	}
	for _, s := range doc.Topology.Switch {
		c.Switches = append(c.Switches, &api.SwitchConfig{Name: s.Name, Nodes: s.Nodes, Switches: s.Switches})
	}
	return c, nil
}
