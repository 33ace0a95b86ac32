package loomcmd

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/loomhpc/loom/cli"
)

// testVersion is what loom version prints in these tests.
const testVersion = "v1.2.3-test"

// fakeDaemons stands for loomd: each daemon command prints "loomd", its
// path and its arguments.
func fakeDaemons(path ...string) RunFunc {
	return func(_ context.Context, args []string, sio Stdio) int {
		fmt.Fprintln(sio.Out, strings.Join(append(append([]string{"loomd"}, path...), args...), " "))
		return 0
	}
}

// testTable is the table with fakeDaemons.
func testTable() []*Command { return Table(testVersion, fakeDaemons) }

// runLoom runs loom with args and returns the exit status, stdout and
// stderr.
func runLoom(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := Run(context.Background(), append([]string{"loom"}, args...), Stdio{In: strings.NewReader(""), Out: &out, Err: &errb}, testVersion, fakeDaemons)
	return code, out.String(), errb.String()
}

// entry is one command of the table with the words that select it.
type entry struct {
	path   []string
	parent *Command
	cmd    *Command
}

// entries walks the table, aliases included.
func entries(table []*Command) []entry {
	var all []entry
	var walk func(prefix []string, parent *Command, list []*Command)
	walk = func(prefix []string, parent *Command, list []*Command) {
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
	table := testTable()
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
			if len(e.path) == 2 && e.path[0] == "slurm" && slices.ContainsFunc(table, func(c *Command) bool { return c.name == name }) {
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
	table := testTable()
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
	table := testTable()
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
		{[]string{"bench"}, "loom bench: known benchmarks: allreduce, submit, failover, sched, e2e, train, client\n"},
		{[]string{"bench", "nope"}, "loom bench: known benchmarks: allreduce, submit, failover, sched, e2e, train, client\n"},
		{[]string{"config"}, "loom config: the only subcommand is check\n"},
		{[]string{"gpu", "top"}, "loom gpu: the only subcommand is topo\n"},
		{[]string{"image"}, "loom image: the only subcommand is import\n"},
		{[]string{"slurm", "sreport"}, "loom slurm: name one of [logs node operator report sacct salloc sbatch scancel scontrol sinfo squeue srun]\n"},
		{nil, "loom: a gang scheduler for GPU clusters\n"},
	}
	for _, tt := range tests {
		code, _, errb := runLoom(tt.args...)
		if code != 2 || !strings.HasPrefix(errb, tt.wantStderr) {
			t.Errorf("loom %q = %d, stderr %q; want 2, stderr starting %q", tt.args, code, errb, tt.wantStderr)
		}
	}
}

func TestVersion(t *testing.T) {
	for _, arg := range []string{"version", "--version"} {
		if code, out, _ := runLoom(arg); code != 0 || out != "loom "+testVersion+"\n" {
			t.Errorf("loom %s = %d, %q; want 0, %q", arg, code, out, "loom "+testVersion+"\n")
		}
	}
}

// The commands that link the daemons' dependencies go to loomd with the
// words that name them and their arguments, whatever the depth.
func TestDaemonCommandsGoToLoomd(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"server", "--rpc-addr", ":1"}, "loomd server --rpc-addr :1"},
		{[]string{"dev", "--agents", "2"}, "loomd dev --agents 2"},
		{[]string{"config", "check", "x.toml"}, "loomd config check x.toml"},
		{[]string{"operator", "gossip", "keygen"}, "loomd operator gossip keygen"},
		{[]string{"bench", "allreduce", "-n", "2"}, "loomd bench allreduce -n 2"},
		{[]string{"image", "import", "a.tar"}, "loomd image import a.tar"},
		{[]string{NetcollWorker, "--rank", "0"}, "loomd " + NetcollWorker + " --rank 0"},
	}
	for _, tt := range tests {
		if code, out, errb := runLoom(tt.args...); code != 0 || out != tt.want+"\n" {
			t.Errorf("loom %s = %d, %q, %q; want 0, %q", strings.Join(tt.args, " "), code, out, errb, tt.want+"\n")
		}
	}
	// The client's own commands stay in the client.
	for _, args := range [][]string{{"version"}, {"slurm", "squeue", "--help"}, {"logs", "--help"}, {"tls", "ca", "create", "--help"}} {
		if _, out, errb := runLoom(args...); strings.Contains(out+errb, "loomd") {
			t.Errorf("loom %s went to loomd: %q", strings.Join(args, " "), out+errb)
		}
	}
}

// Invoked under a Slurm command's name, loom is that command.
func TestSlurmCommandByName(t *testing.T) {
	var out, errb bytes.Buffer
	code := Run(context.Background(), []string{"/usr/bin/squeue", "--help"}, Stdio{In: strings.NewReader(""), Out: &out, Err: &errb}, testVersion, fakeDaemons)
	if code != 0 || !strings.Contains(out.String(), "Usage:") {
		t.Errorf("squeue --help = %d, %q; want 0 and squeue's usage", code, out.String())
	}
}
