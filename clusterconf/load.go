package clusterconf

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/BurntSushi/toml"
	"github.com/loomhpc/loom/api"
)

// Error is a configuration error: where it is and what is wrong.
type Error struct {
	File string
	Line int    // 0 when it cannot tell
	Key  string // "[scheduler] default_time", "[[qos]] high: preempt"
	Msg  string
}

func (e *Error) Error() string {
	where := e.File
	if e.Line > 0 {
		where = fmt.Sprintf("%s:%d", e.File, e.Line)
	}
	if e.Key == "" {
		return where + ": " + e.Msg
	}
	return where + ": " + e.Key + ": " + e.Msg
}

// Tables are the top-level tables this package reads; a configuration
// file's other tables ([server], [agent], [cli]) belong to the daemons'
// flags.
var Tables = []string{"scheduler", "qos", "partition", "topology"}

// Load reads the cluster configuration in the file at path. A file with
// none of Tables gives an empty configuration (the defaults).
func Load(path string) (*api.ClusterConfig, error) {
	text, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return Parse(path, string(text), os.ReadFile)
}

// Parse reads the cluster configuration in text, which was read from
// path; readFile reads the topology.conf it may name (relative to path's
// directory). The result's Source and Sha256 (of text and of the
// topology.conf read) are set.
func Parse(path, text string, readFile func(string) ([]byte, error)) (*api.ClusterConfig, error) {
	p := &parser{file: path, text: text, lines: indexLines(text), readFile: readFile}
	var doc map[string]any
	if _, err := toml.Decode(text, &doc); err != nil {
		var perr toml.ParseError
		if errors.As(err, &perr) {
			return nil, &Error{File: path, Line: perr.Position.Line, Msg: perr.Message}
		}
		return nil, &Error{File: path, Msg: err.Error()}
	}
	c := &api.ClusterConfig{Scheduler: &api.SchedulerSettings{}, Source: path}
	digest := sha256.New()
	digest.Write([]byte(text))
	p.digest = func(b []byte) { digest.Write([]byte{0}); digest.Write(b) }
	if t, ok := doc["scheduler"]; ok {
		if err := p.scheduler(c.Scheduler, t); err != nil {
			return nil, err
		}
	}
	if err := p.qos(c, doc["qos"]); err != nil {
		return nil, err
	}
	if err := p.partitions(c, doc["partition"]); err != nil {
		return nil, err
	}
	if t, ok := doc["topology"]; ok {
		if err := p.topology(c, t); err != nil {
			return nil, err
		}
	}
	c.Sha256 = hex.EncodeToString(digest.Sum(nil))
	return c, nil
}

type parser struct {
	file, text string
	lines      *lineIndex
	readFile   func(string) ([]byte, error)
	digest     func([]byte)
}

// errAt is an error at key of table (a lineIndex table name); name is how
// the message shows the table.
func (p *parser) errAt(table, shown, key, format string, args ...any) error {
	k := key
	if shown != "" {
		k = shown + " " + key
	}
	return &Error{File: p.file, Line: p.lines.line(table, key), Key: k, Msg: fmt.Sprintf(format, args...)}
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// tables reads an array of tables ([[qos]]); a single table is refused.
func (p *parser) tables(name string, v any) ([]map[string]any, error) {
	switch x := v.(type) {
	case nil:
		return nil, nil
	case []map[string]any:
		return x, nil
	}
	return nil, p.errAt(name, "", name, "write each as a [[%s]] table", name)
}

func (p *parser) qos(c *api.ClusterConfig, v any) error {
	ts, err := p.tables("qos", v)
	if err != nil {
		return err
	}
	seen := map[string]bool{}
	for i, t := range ts {
		table := fmt.Sprintf("qos#%d", i)
		q := &api.QOSConfig{}
		name, _ := t["name"].(string)
		shown := fmt.Sprintf("[[qos]] %q", name)
		if name == "" {
			return p.errAt(table, "[[qos]]", "name", "every [[qos]] needs a name (a string)")
		}
		if seen[name] {
			return p.errAt(table, shown, "name", "a second QoS of this name")
		}
		seen[name] = true
		q.Name = name
		for _, k := range sortedKeys(t) {
			v := t[k]
			var err error
			switch k {
			case "name":
			case "priority":
				q.Priority, err = asUint32(v)
			case "preempt":
				q.Preempt, err = asList(v)
			case "max_wall":
				q.MaxWallS, err = asSlurmTime(v)
			case "max_tres_per_user":
				err = setTRES(q, v)
			case "max_jobs_per_user":
				q.MaxJobsPerUser, err = asUint32(v)
			case "max_submit_jobs_per_user":
				q.MaxSubmitPerUser, err = asUint32(v)
			default:
				err = fmt.Errorf("unknown key (want name, priority, preempt, max_wall, max_tres_per_user, max_jobs_per_user, max_submit_jobs_per_user)")
			}
			if err != nil {
				return p.errAt(table, shown, k, "%v", err)
			}
		}
		c.Qos = append(c.Qos, q)
	}
	for i, q := range c.Qos {
		for _, name := range q.Preempt {
			if !seen[name] {
				return p.errAt(fmt.Sprintf("qos#%d", i), fmt.Sprintf("[[qos]] %q", q.Name), "preempt", "unknown QoS %q (define it in a [[qos]] table)", name)
			}
			if name == q.Name {
				return p.errAt(fmt.Sprintf("qos#%d", i), fmt.Sprintf("[[qos]] %q", q.Name), "preempt", "a QoS cannot preempt itself")
			}
		}
	}
	return nil
}

// setTRES reads MaxTRESPerUser: "gres/gpu=8,cpu=64".
func setTRES(q *api.QOSConfig, v any) error {
	s, err := asString(v)
	if err != nil {
		return err
	}
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		k, val, ok := strings.Cut(item, "=")
		if !ok {
			return fmt.Errorf("%q is not TRES=COUNT (as gres/gpu=8 or cpu=64)", item)
		}
		n, err := asInt(val, 0, 1<<31)
		if err != nil {
			return fmt.Errorf("%s: %v", k, err)
		}
		switch strings.ToLower(k) {
		case "gres/gpu", "gpu":
			q.MaxGpusPerUser = uint32(n)
		case "cpu":
			q.MaxCpusPerUser = uint32(n)
		default:
			return fmt.Errorf("TRES %q is not limited here (want gres/gpu or cpu)", k)
		}
	}
	return nil
}

// partitionStates and preemptModes are the values Slurm's State= and
// PreemptMode= take that Loom implements.
var (
	partitionStates = []string{"UP", "DOWN", "DRAIN", "INACTIVE"}
	preemptModes    = []string{"OFF", "REQUEUE", "CANCEL"}
)

func (p *parser) partitions(c *api.ClusterConfig, v any) error {
	ts, err := p.tables("partition", v)
	if err != nil {
		return err
	}
	qos := map[string]bool{}
	for _, q := range c.Qos {
		qos[q.Name] = true
	}
	seen := map[string]bool{}
	defaultName := ""
	for i, t := range ts {
		table := fmt.Sprintf("partition#%d", i)
		name, _ := t["name"].(string)
		shown := fmt.Sprintf("[[partition]] %q", name)
		if name == "" {
			return p.errAt(table, "[[partition]]", "name", "every [[partition]] needs a name (a string)")
		}
		if seen[name] {
			return p.errAt(table, shown, "name", "a second partition of this name")
		}
		seen[name] = true
		pc := &api.PartitionConfig{Name: name}
		for _, k := range sortedKeys(t) {
			v := t[k]
			var err error
			switch k {
			case "name":
			case "nodes":
				if pc.Nodes, err = asString(v); err == nil {
					_, err = api.ExpandHostlist(pc.Nodes)
				}
			case "features":
				pc.Features, err = asList(v)
			case "default":
				pc.Default, err = asBool(v)
			case "max_time":
				pc.MaxTimeS, err = asSlurmTime(v)
			case "default_time":
				pc.DefaultTimeS, err = asSlurmTime(v)
			case "state":
				pc.State, err = oneOf(v, partitionStates)
			case "allow_groups":
				pc.AllowGroups, err = asList(v)
			case "allow_accounts":
				pc.AllowAccounts, err = asList(v)
			case "deny_accounts":
				pc.DenyAccounts, err = asList(v)
			case "allow_qos":
				if pc.AllowQos, err = asList(v); err == nil {
					err = knownQOS(pc.AllowQos, qos)
				}
			case "priority_tier":
				pc.PriorityTier, err = asUint32(v)
			case "priority_job_factor":
				pc.PriorityJobFactor, err = asUint32(v)
			case "preempt_mode":
				pc.PreemptMode, err = oneOf(v, preemptModes)
			case "max_nodes":
				pc.MaxNodes, err = asUint32(v)
			case "def_mem_per_cpu":
				pc.DefMemPerCpuMb, err = asSizeMB(v)
			case "def_mem_per_gpu":
				pc.DefMemPerGpuMb, err = asSizeMB(v)
			case "qos":
				if pc.Qos, err = asString(v); err == nil {
					err = knownQOS([]string{pc.Qos}, qos)
				}
			case "private_tmp":
				pc.PrivateTmp, err = asOptionalBool(v)
			case "allow_swap":
				pc.AllowSwap, err = asOptionalBool(v)
			default:
				err = fmt.Errorf("unknown key (want name, nodes, features, default, max_time, default_time, state, allow_groups, allow_accounts, deny_accounts, allow_qos, priority_tier, priority_job_factor, preempt_mode, max_nodes, def_mem_per_cpu, def_mem_per_gpu, qos, private_tmp, allow_swap)")
			}
			if err != nil {
				return p.errAt(table, shown, k, "%v", err)
			}
		}
		if pc.Default {
			if defaultName != "" {
				return p.errAt(table, shown, "default", "partition %q is the default already; only one may be", defaultName)
			}
			defaultName = name
		}
		if len(pc.AllowAccounts) > 0 && len(pc.DenyAccounts) > 0 {
			return p.errAt(table, shown, "deny_accounts", "give allow_accounts or deny_accounts, not both (as Slurm)")
		}
		if pc.MaxTimeS > 0 && pc.DefaultTimeS > pc.MaxTimeS {
			return p.errAt(table, shown, "default_time", "%s is above max_time %s", api.FormatSlurmDuration(pc.DefaultTimeS), api.FormatSlurmDuration(pc.MaxTimeS))
		}
		c.Partitions = append(c.Partitions, pc)
	}
	return nil
}

// oneOf reads a string that must be one of want (any case; the result
// is upper case).
func oneOf(v any, want []string) (string, error) {
	s, err := asString(v)
	if err != nil {
		return "", err
	}
	u := strings.ToUpper(strings.TrimSpace(s))
	if !slices.Contains(want, u) {
		return "", fmt.Errorf("%q is not one of %s", s, strings.Join(want, ", "))
	}
	return u, nil
}

func knownQOS(names []string, qos map[string]bool) error {
	for _, n := range names {
		if !qos[n] {
			return fmt.Errorf("unknown QoS %q (define it in a [[qos]] table)", n)
		}
	}
	return nil
}

// topologyPath resolves a topology_conf path relative to the file that
// names it.
func (p *parser) topologyPath(path string) string {
	if filepath.IsAbs(path) {
		return path
	}
	return filepath.Join(filepath.Dir(p.file), path)
}
