package devcluster

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/BurntSushi/toml"

	"github.com/loomhpc/loom/agent"
	"github.com/loomhpc/loom/api"
	"github.com/loomhpc/loom/clusterconf"
)

// NodeGroup is one [[dev.nodes]] table of a loom.toml: Count simulated
// nodes alike, named Name1, Name2, ….
type NodeGroup struct {
	Count   int    `toml:"count"`
	Name    string `toml:"name"`    // name prefix
	Profile string `toml:"profile"` // GPU profile (dgx-h100, dgx-a100, …, flat-N); "" or "none": no GPUs
	// CPUs and MemoryMB, when set, are what the nodes offer jobs (at most
	// the profile's; the rest is kept as --reserved-cpus and
	// --reserved-mem-mb would keep it).
	CPUs        uint32   `toml:"cpus"`
	MemoryMB    uint64   `toml:"memory_mb"`
	Features    []string `toml:"features"`
	Partitions  []string `toml:"partitions"`
	LeafSwitch  string   `toml:"leaf_switch"`
	SpineSwitch string   `toml:"spine_switch"`
	// AgentArgs are further loom agent flags for these nodes
	// (applyAgentArgs lists those a dev node takes).
	AgentArgs []string `toml:"agent_args"`
}

// File is what loom dev --config reads from a loom.toml: the cluster
// configuration every server reads, and the [[dev.nodes]] to simulate.
type File struct {
	Cluster *api.ClusterConfig
	Nodes   []NodeGroup
}

// ReadConfig reads a loom.toml for loom dev: its cluster configuration,
// read and checked as the servers read it (clusterconf), and its
// [[dev.nodes]] tables. Nodes given a leaf_switch become switches of the
// configuration when the file names none.
func ReadConfig(path string) (*File, error) {
	text, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	cluster, err := clusterconf.Load(path)
	if err != nil {
		return nil, err
	}
	var doc struct {
		Dev struct {
			Nodes []NodeGroup `toml:"nodes"`
		} `toml:"dev"`
	}
	md, err := toml.Decode(string(text), &doc)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	for _, k := range md.Undecoded() {
		if len(k) > 0 && k[0] == "dev" {
			return nil, fmt.Errorf("%s: [[dev.nodes]]: unknown key %q (want count, name, profile, cpus, memory_mb, features, partitions, leaf_switch, spine_switch, agent_args)", path, k.String())
		}
	}
	f := &File{Cluster: cluster, Nodes: doc.Dev.Nodes}
	if len(f.Nodes) == 0 {
		return nil, fmt.Errorf("%s: no [[dev.nodes]] tables: say which nodes loom dev simulates", path)
	}
	seen := map[string]bool{}
	for i, g := range f.Nodes {
		where := fmt.Sprintf("%s: [[dev.nodes]] #%d", path, i+1)
		switch {
		case g.Count <= 0:
			return nil, fmt.Errorf("%s: count = %d: want at least 1", where, g.Count)
		case g.Name == "":
			return nil, fmt.Errorf("%s: name: give the nodes' name prefix", where)
		case seen[g.Name]:
			return nil, fmt.Errorf("%s: name = %q: a second group of this name", where, g.Name)
		}
		seen[g.Name] = true
		if err := applyAgentArgs(&agent.Config{}, g.AgentArgs); err != nil {
			return nil, fmt.Errorf("%s: agent_args: %w", where, err)
		}
	}
	if len(f.Cluster.GetSwitches()) == 0 {
		f.Cluster = withSwitches(f.Cluster, f.Nodes)
	}
	return f, nil
}

// names returns the node names of g.
func (g NodeGroup) names() []string {
	out := make([]string, g.Count)
	for i := range out {
		out[i] = fmt.Sprintf("%s%d", g.Name, i+1)
	}
	return out
}

// withSwitches returns c with a switch for each leaf_switch of the node
// groups (its nodes) and each spine_switch (its leaves).
func withSwitches(c *api.ClusterConfig, groups []NodeGroup) *api.ClusterConfig {
	leaves := map[string][]string{}
	spines := map[string][]string{}
	var order []string
	for _, g := range groups {
		if g.LeafSwitch == "" {
			continue
		}
		if _, ok := leaves[g.LeafSwitch]; !ok {
			order = append(order, g.LeafSwitch)
		}
		leaves[g.LeafSwitch] = append(leaves[g.LeafSwitch], g.names()...)
		if g.SpineSwitch != "" && !slices.Contains(spines[g.SpineSwitch], g.LeafSwitch) {
			spines[g.SpineSwitch] = append(spines[g.SpineSwitch], g.LeafSwitch)
		}
	}
	if len(order) == 0 {
		return c
	}
	if c == nil {
		c = &api.ClusterConfig{}
	}
	for _, leaf := range order {
		c.Switches = append(c.Switches, &api.SwitchConfig{Name: leaf, Nodes: api.CompressHostlist(leaves[leaf])})
	}
	for _, g := range groups {
		if sw := spines[g.SpineSwitch]; g.SpineSwitch != "" && sw != nil {
			c.Switches = append(c.Switches, &api.SwitchConfig{Name: g.SpineSwitch, Switches: strings.Join(sw, ",")})
			delete(spines, g.SpineSwitch)
		}
	}
	return c
}

// applyAgentArgs sets cfg from loom agent flags, those that mean something
// for a simulated node: --features, --partitions (added to the group's),
// --gpus, --gres, --gpu-type, --reserved-cpus, --reserved-mem-mb. Any
// other flag is refused, never ignored.
func applyAgentArgs(cfg *agent.Config, args []string) error {
	if len(args) == 0 {
		return nil
	}
	fs := flag.NewFlagSet("loom agent", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	features := fs.String("features", "", "")
	parts := fs.String("partitions", "", "")
	fs.IntVar(&cfg.GPUs, "gpus", cfg.GPUs, "")
	fs.IntVar(&cfg.ReservedCPUs, "reserved-cpus", cfg.ReservedCPUs, "")
	fs.Uint64Var(&cfg.ReservedMemMB, "reserved-mem-mb", cfg.ReservedMemMB, "")
	gres := fs.String("gres", "", "")
	fs.StringVar(&cfg.GPUType, "gpu-type", cfg.GPUType, "")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			err = errors.New("-h is not a node setting")
		}
		return fmt.Errorf("%w (a dev node takes --features, --partitions, --gpus, --gres, --gpu-type, --reserved-cpus, --reserved-mem-mb)", err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if *gres != "" {
		g, err := api.ParseNodeGres(*gres)
		if err != nil {
			return fmt.Errorf("--gres=%s: %w", *gres, err)
		}
		// The node's own --gres replaces what every node was given.
		cfg.Gres = g
	}
	cfg.Features = append(cfg.Features, splitComma(*features)...)
	cfg.Partitions = append(cfg.Partitions, splitComma(*parts)...)
	return nil
}

func splitComma(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}
