package clusterconf

import (
	"bufio"
	"fmt"
	"strings"

	"github.com/loomhpc/loom/api"
)

func (p *parser) topology(c *api.ClusterConfig, v any) error {
	t, ok := v.(map[string]any)
	if !ok {
		return p.errAt("", "", "topology", "want a [topology] table")
	}
	conf, hasConf := t["topology_conf"]
	sw, hasSwitches := t["switch"]
	for _, k := range sortedKeys(t) {
		if k != "topology_conf" && k != "switch" {
			return p.errAt("topology", "[topology]", k, "unknown key (want topology_conf or [[topology.switch]] tables)")
		}
	}
	if hasConf && hasSwitches {
		return p.errAt("topology", "[topology]", "topology_conf", "give topology_conf or [[topology.switch]] tables, not both")
	}
	if hasConf {
		path, err := asString(conf)
		if err != nil {
			return p.errAt("topology", "[topology]", "topology_conf", "%v", err)
		}
		full := p.topologyPath(path)
		text, err := p.readFile(full)
		if err != nil {
			return p.errAt("topology", "[topology]", "topology_conf", "%v", err)
		}
		p.digest(text)
		switches, err := ParseTopologyConf(full, string(text))
		if err != nil {
			return err
		}
		c.Switches = switches
		if err := CheckSwitches(switches); err != nil {
			return &Error{File: full, Msg: err.Error()}
		}
		return nil
	}
	ts, ok := sw.([]map[string]any)
	if !ok {
		return p.errAt("topology", "[topology]", "switch", "write each switch as a [[topology.switch]] table")
	}
	for i, st := range ts {
		table := fmt.Sprintf("topology.switch#%d", i)
		s := &api.SwitchConfig{}
		for _, k := range sortedKeys(st) {
			var err error
			switch k {
			case "name":
				s.Name, err = asString(st[k])
			case "nodes":
				if s.Nodes, err = asString(st[k]); err == nil {
					_, err = api.ExpandHostlist(s.Nodes)
				}
			case "switches":
				if s.Switches, err = asString(st[k]); err == nil {
					_, err = api.ExpandHostlist(s.Switches)
				}
			default:
				err = fmt.Errorf("unknown key (want name, nodes, switches)")
			}
			if err != nil {
				return p.errAt(table, "[[topology.switch]]", k, "%v", err)
			}
		}
		if s.Name == "" {
			return p.errAt(table, "[[topology.switch]]", "name", "every switch needs a name")
		}
		c.Switches = append(c.Switches, s)
		if err := CheckSwitches(c.Switches); err != nil {
			return p.errAt(table, fmt.Sprintf("[[topology.switch]] %q", s.Name), "switches", "%v", err)
		}
	}
	// Children may be defined after their parent: check the whole tree.
	if err := checkChildren(c.Switches); err != nil {
		return p.errAt("topology", "[topology]", "switch", "%v", err)
	}
	return nil
}

// ParseTopologyConf reads Slurm's topology.conf syntax
// ("SwitchName=s1 Nodes=gpu[01-16]", "SwitchName=s0 Switches=s[1-2]"); its
// errors name path and the line.
func ParseTopologyConf(path, text string) ([]*api.SwitchConfig, error) {
	var out []*api.SwitchConfig
	sc := bufio.NewScanner(strings.NewReader(text))
	for n := 1; sc.Scan(); n++ {
		l, _, _ := strings.Cut(sc.Text(), "#")
		if strings.TrimSpace(l) == "" {
			continue
		}
		s := &api.SwitchConfig{}
		for _, f := range strings.Fields(l) {
			k, v, ok := strings.Cut(f, "=")
			if !ok {
				return nil, &Error{File: path, Line: n, Msg: fmt.Sprintf("%q is not Key=Value", f)}
			}
			switch strings.ToLower(k) {
			case "switchname":
				s.Name = v
			case "nodes":
				s.Nodes = v
			case "switches":
				s.Switches = v
			case "linkspeed":
			default:
				return nil, &Error{File: path, Line: n, Key: k, Msg: "unknown key (want SwitchName, Nodes, Switches, LinkSpeed)"}
			}
			if strings.EqualFold(k, "nodes") || strings.EqualFold(k, "switches") {
				if _, err := api.ExpandHostlist(v); err != nil {
					return nil, &Error{File: path, Line: n, Key: k, Msg: err.Error()}
				}
			}
		}
		if s.Name == "" {
			return nil, &Error{File: path, Line: n, Key: "SwitchName", Msg: "missing"}
		}
		out = append(out, s)
		if err := CheckSwitches(out); err != nil {
			return nil, &Error{File: path, Line: n, Key: "SwitchName=" + s.Name, Msg: err.Error()}
		}
	}
	if err := checkChildren(out); err != nil {
		return nil, &Error{File: path, Msg: err.Error()}
	}
	return out, sc.Err()
}

// CheckSwitches checks a switch tree as far as it is written: no two
// switches of one name, no node under two leaves, no switch under two
// parents, no cycle.
func CheckSwitches(switches []*api.SwitchConfig) error {
	names := map[string]bool{}
	leafOf := map[string]string{}
	parentOf := map[string]string{}
	for _, s := range switches {
		if names[s.Name] {
			return fmt.Errorf("switch %q is defined twice", s.Name)
		}
		names[s.Name] = true
		nodes, _ := api.ExpandHostlist(s.Nodes)
		for _, n := range nodes {
			if other, ok := leafOf[n]; ok {
				return fmt.Errorf("node %s is under both %s and %s", n, other, s.Name)
			}
			leafOf[n] = s.Name
		}
		children, _ := api.ExpandHostlist(s.Switches)
		for _, ch := range children {
			if other, ok := parentOf[ch]; ok {
				return fmt.Errorf("switch %s is under both %s and %s", ch, other, s.Name)
			}
			parentOf[ch] = s.Name
		}
	}
	for _, s := range switches {
		start := s.Name
		seen := map[string]bool{start: true}
		for at := parentOf[start]; at != ""; at = parentOf[at] {
			if seen[at] {
				return fmt.Errorf("switch %s is its own ancestor (a cycle through %s)", start, at)
			}
			seen[at] = true
		}
	}
	return nil
}

// checkChildren checks that every child switch named is defined.
func checkChildren(switches []*api.SwitchConfig) error {
	names := map[string]bool{}
	for _, s := range switches {
		names[s.Name] = true
	}
	for _, s := range switches {
		children, _ := api.ExpandHostlist(s.Switches)
		for _, ch := range children {
			if !names[ch] {
				return fmt.Errorf("switch %s names child switch %s, which is not defined", s.Name, ch)
			}
		}
	}
	return nil
}
