package main

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/loomhpc/loom/cli"
)

// testWriter logs what a command writes.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// testStdio is a command's streams in a test: no input, output logged.
func testStdio(t *testing.T) stdio {
	return stdio{in: strings.NewReader(""), out: testWriter{t}, err: testWriter{t}}
}

// runLoom runs loom with args and returns the exit status, stdout and
// stderr.
func runLoom(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := run(context.Background(), append([]string{"loom"}, args...), stdio{in: strings.NewReader(""), out: &out, err: &errb})
	return code, out.String(), errb.String()
}

// entry is one command of the table with the words that select it.
type entry struct {
	path   []string
	parent *command
	cmd    *command
}

// entries walks the table, aliases included.
func entries(table []*command) []entry {
	var all []entry
	var walk func(prefix []string, parent *command, list []*command)
	walk = func(prefix []string, parent *command, list []*command) {
		for _, c := range list {
			for _, n := range c.names() {
				p := append(slices.Clone(prefix), n)
				all = append(all, entry{path: p, parent: parent, cmd: c})
				if n == c.name {
					walk(p, c, c.subs)
				}
			}
		}
	}
	walk(nil, nil, table)
	return all
}

// The usage text lists every command the table dispatches: a line of
// its own, or a word of its parent's line (slurm's commands; those of cli's
// commands that loom also runs by themselves, such as logs, have their own
// line).
func TestHelpListsEveryCommand(t *testing.T) {
	code, help, _ := runLoom("--help")
	if code != 0 {
		t.Fatalf("loom --help = %d, want 0", code)
	}
	table := commandTable()
	for _, e := range entries(table) {
		name := e.path[len(e.path)-1]
		switch {
		case e.cmd.summary != "" && name == e.cmd.name:
			if line := "  loom " + strings.Join(e.path, " "); !strings.Contains(help, line+" ") {
				t.Errorf("loom --help lacks the line %q", line)
			}
		case e.cmd.summary != "":
			if !strings.Contains(e.cmd.summary, name) {
				t.Errorf("loom --help: %q's line does not name its alias %q", e.cmd.name, name)
			}
		case len(e.cmd.subs) == 0:
			if len(e.path) == 2 && e.path[0] == "slurm" && slices.ContainsFunc(table, func(c *command) bool { return c.name == name }) {
				continue
			}
			if e.parent == nil || !slices.Contains(strings.FieldsFunc(e.parent.summary, func(r rune) bool { return r == ',' || r == ' ' }), name) {
				t.Errorf("loom --help does not list %q", strings.Join(e.path, " "))
			}
		}
	}
	for _, want := range []string{"loom bench train", "loom containerd-logger", "loom netcoll-worker", "Started by loom itself"} {
		if !strings.Contains(help, want) {
			t.Errorf("loom --help lacks %q", want)
		}
	}
}

// Every entry of the table dispatches: `loom <command> --help` reaches the
// command, not the table's own errors.
func TestEveryCommandDispatches(t *testing.T) {
	table := commandTable()
	for _, e := range entries(table) {
		t.Run(strings.Join(e.path, " "), func(t *testing.T) {
			if run, _, _ := lookup(table, e.path); run == nil && len(e.cmd.subs) == 0 {
				t.Fatalf("lookup(%q) found nothing to run", e.path)
			}
			if e.cmd.internal {
				return // they write to the process's own streams
			}
			if len(e.cmd.subs) > 0 && e.cmd.run == nil {
				return // a group: its subcommands are tried
			}
			code, out, errb := runLoom(append(slices.Clone(e.path), "--help")...)
			for _, bad := range []string{"unknown command", "the only subcommand", "known benchmarks", "known subcommands", "name one of"} {
				if strings.Contains(out+errb, bad) {
					t.Errorf("loom %s --help = %d, printed %q", strings.Join(e.path, " "), code, out+errb)
				}
			}
		})
	}
}

func TestSlurmNamesAreInTheTable(t *testing.T) {
	table := commandTable()
	for _, name := range cli.Commands() {
		if run, _, _ := lookup(table, []string{"slurm", name}); run == nil {
			t.Errorf("loom slurm %s does not dispatch", name)
		}
	}
}

func TestUsageErrors(t *testing.T) {
	tests := []struct {
		args       []string
		wantStderr string
	}{
		{[]string{"frob"}, "loom: unknown command \"frob\"\n\nloom: a gang scheduler for GPU clusters\n"},
		{[]string{"bench"}, "loom bench: known benchmarks: allreduce, submit, failover, sched, e2e, train\n"},
		{[]string{"bench", "nope"}, "loom bench: known benchmarks: allreduce, submit, failover, sched, e2e, train\n"},
		{[]string{"config"}, "loom config: the only subcommand is check\n"},
		{[]string{"gpu", "top"}, "loom gpu: the only subcommand is topo\n"},
		{[]string{"image"}, "loom image: the only subcommand is import\n"},
		{[]string{"slurm", "sreport"}, "loom slurm: name one of [logs node operator sacct salloc sbatch scancel scontrol sinfo squeue srun]\n"},
		{nil, "loom: a gang scheduler for GPU clusters\n"},
	}
	for _, tt := range tests {
		code, _, errb := runLoom(tt.args...)
		if code != 2 || !strings.HasPrefix(errb, tt.wantStderr) {
			t.Errorf("loom %q = %d, stderr %q; want 2, stderr starting %q", tt.args, code, errb, tt.wantStderr)
		}
	}
}

func TestVersionAndKeygen(t *testing.T) {
	for _, arg := range []string{"version", "--version"} {
		if code, out, _ := runLoom(arg); code != 0 || out != "loom "+version+"\n" {
			t.Errorf("loom %s = %d, %q; want 0, %q", arg, code, out, "loom "+version+"\n")
		}
	}
	code, out, errb := runLoom("operator", "gossip", "keygen")
	if code != 0 || len(strings.TrimSpace(out)) == 0 {
		t.Errorf("loom operator gossip keygen = %d, %q, %q; want 0 and a key", code, out, errb)
	}
}

// Invoked under a Slurm command's name, loom is that command.
func TestSlurmCommandByName(t *testing.T) {
	var out, errb bytes.Buffer
	code := run(context.Background(), []string{"/usr/bin/squeue", "--help"}, stdio{in: strings.NewReader(""), out: &out, err: &errb})
	if code != 0 || !strings.Contains(out.String(), "Usage:") {
		t.Errorf("squeue --help = %d, %q; want 0 and squeue's usage", code, out.String())
	}
}
