package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
	"github.com/loomhpc/loom/clusterconf"
	"github.com/loomhpc/loom/cmd/internal/loomcmd"
)

// The configuration file: every flag of `loom server` and `loom agent` may
// also be set in a TOML file, in a [server] or [agent] table, under the
// flag's name (dashes or underscores). The command line overrides the
// file. The file is --config, else $LOOM_CONFIG, else /etc/loom/loom.toml
// when it exists. deploy/loom.toml is a commented sample.

// DefaultConfigPath is read when neither --config nor $LOOM_CONFIG says
// otherwise and the file exists.
const DefaultConfigPath = loomcmd.DefaultConfigPath

// configSection is a table a configuration file may hold: the daemon
// whose flags it sets, and the prefix its keys take there.
type configSection struct {
	name, daemon, prefix string
}

// configSections are the tables a configuration file may hold.
// [scheduler] sets loom server's --scheduler-* flags: its policy is
// --scheduler-policy.
var configSections = []configSection{
	{"server", "server", ""},
	{"agent", "agent", ""},
	{"scheduler", "server", "scheduler-"},
	// The [cli] table is the commands' own (package cli reads it).
	{"cli", "cli", ""},
}

// applyConfig registers --config on fs and sets fs's flags from the
// tables of daemon (server or agent) of the configuration file named by
// args, $LOOM_CONFIG or the default path. Call it before fs.Parse(args).
func applyConfig(fs *flag.FlagSet, daemon string, args []string) error {
	explicit := configArg(args)
	fs.String("config", explicit, "configuration file (TOML, a ["+daemon+"] table of these flags); default $LOOM_CONFIG or "+DefaultConfigPath+" if it exists")
	path := configPath(args)
	if path == "" {
		return nil
	}
	text, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	return setFromConfig(fs, daemon, path, string(text))
}

// configPath is the configuration file args name: --config, else
// $LOOM_CONFIG, else the default path when it exists; "" for none.
func configPath(args []string) string {
	path := configArg(args)
	if path == "" {
		path = os.Getenv("LOOM_CONFIG")
	}
	if path == "" {
		if _, err := os.Stat(DefaultConfigPath); err != nil {
			return ""
		}
		path = DefaultConfigPath
	}
	return path
}

// configArg returns the value of --config in args, if given.
func configArg(args []string) string {
	for i, a := range args {
		if a == "--" {
			break
		}
		for _, p := range []string{"--config", "-config"} {
			if a == p && i+1 < len(args) {
				return args[i+1]
			}
			if v, ok := strings.CutPrefix(a, p+"="); ok {
				return v
			}
		}
	}
	return ""
}

func setFromConfig(fs *flag.FlagSet, daemon, path, text string) error {
	var doc map[string]any
	if _, err := toml.Decode(text, &doc); err != nil {
		var perr toml.ParseError
		if errors.As(err, &perr) {
			return fmt.Errorf("%s:%d: %s", path, perr.Position.Line, perr.Message)
		}
		return fmt.Errorf("%s: %v", path, err)
	}
	tops := make([]string, 0, len(doc))
	for k := range doc {
		tops = append(tops, k)
	}
	slices.Sort(tops)
	for _, k := range tops {
		if slices.Contains(clusterconf.Tables, k) && k != "scheduler" {
			continue // [[qos]], [[partition]], [topology]: package clusterconf reads them
		}
		known := slices.ContainsFunc(configSections, func(s configSection) bool { return s.name == k })
		if _, isTable := doc[k].(map[string]any); !isTable || !known {
			return fmt.Errorf("%s:%d: %q: settings belong in a [server], [agent], [scheduler], [cli], [[qos]], [[partition]] or [topology] table", path, keyLine(text, "", k), k)
		}
	}
	for _, sec := range configSections {
		if sec.daemon != daemon {
			continue
		}
		table, _ := doc[sec.name].(map[string]any)
		if err := setTable(fs, sec, table, path, text); err != nil {
			return err
		}
	}
	return nil
}

// setTable sets fs's flags from one table of the file.
func setTable(fs *flag.FlagSet, sec configSection, table map[string]any, path, text string) error {
	section := sec.name
	keys := make([]string, 0, len(table))
	for k := range table {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		name := sec.prefix + strings.ReplaceAll(k, "_", "-")
		line := keyLine(text, section, k)
		f := fs.Lookup(name)
		if f == nil && section == "scheduler" && slices.Contains(clusterconf.SchedulerKeys(), k) {
			continue // a cluster setting without a flag: clusterconf reads it
		}
		if f == nil || name == "config" {
			return fmt.Errorf("%s:%d: [%s] unknown setting %q (see %s --help)", path, line, section, k, fs.Name())
		}
		v, err := configValue(table[k])
		if err != nil {
			return fmt.Errorf("%s:%d: [%s] %s: %v", path, line, section, k, err)
		}
		if err := f.Value.Set(v); err != nil {
			return fmt.Errorf("%s:%d: [%s] %s: invalid value %q: %v", path, line, section, k, v, err)
		}
	}
	return nil
}

// configValue turns a TOML value into a flag's text: lists become the
// comma-separated form the list flags take.
func configValue(v any) (string, error) {
	switch x := v.(type) {
	case string:
		return x, nil
	case bool:
		return strconv.FormatBool(x), nil
	case int64:
		return strconv.FormatInt(x, 10), nil
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64), nil
	case []any:
		parts := make([]string, 0, len(x))
		for _, e := range x {
			s, err := configValue(e)
			if err != nil {
				return "", err
			}
			parts = append(parts, s)
		}
		return strings.Join(parts, ","), nil
	default:
		return "", fmt.Errorf("a %T cannot set a flag (want a string, number, boolean or list)", v)
	}
}

var tableHeader = regexp.MustCompile(`^\s*\[\s*([A-Za-z0-9_-]+)\s*\]`)

// keyLine finds the line of key in table section (or at the top level when
// section is empty), for error messages; 0 when it cannot tell.
func keyLine(text, section, key string) int {
	keyRE := regexp.MustCompile(`^\s*("?)` + regexp.QuoteMeta(key) + `("?)\s*[=.]`)
	current := ""
	sc := bufio.NewScanner(strings.NewReader(text))
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if m := tableHeader.FindStringSubmatch(line); m != nil {
			current = m[1]
			if section == "" && current == key {
				return n
			}
			continue
		}
		if current == section && keyRE.MatchString(line) {
			return n
		}
	}
	return 0
}

// checkingConfig makes runServer and runAgent stop once their flags are
// parsed: `loom config check` runs them to validate a file against the
// very flags the daemons define.
var checkingConfig bool

// configCheckMain is `loom config check [FILE]`.
func configCheckMain(ctx context.Context, args []string, sio loomcmd.Stdio) int {
	if len(args) > 1 || (len(args) == 1 && strings.HasPrefix(args[0], "-")) {
		fmt.Fprintln(sio.Err, "usage: loom config check [FILE]  (default $LOOM_CONFIG or "+DefaultConfigPath+")")
		return 2
	}
	path := os.Getenv("LOOM_CONFIG")
	if len(args) == 1 {
		path = args[0]
	}
	if path == "" {
		path = DefaultConfigPath
	}
	if _, err := os.Stat(path); err != nil {
		fmt.Fprintln(sio.Err, "loom config check:", err)
		return 1
	}
	// The cluster configuration first: its errors name their line whatever
	// the daemons' own tables hold.
	if _, err := clusterconf.Load(path); err != nil {
		fmt.Fprintln(sio.Err, "loom config check:", err)
		return 1
	}
	checkingConfig = true
	defer func() { checkingConfig = false }()
	for _, run := range []loomcmd.RunFunc{runServer, runAgent} {
		if rc := run(ctx, []string{"--config", path}, sio); rc != 0 {
			return 1
		}
	}
	fmt.Fprintf(sio.Out, "%s: valid\n", path)
	return 0
}
