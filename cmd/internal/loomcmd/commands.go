package loomcmd

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strings"

	"github.com/loomhpc/loom/cli"
	"github.com/loomhpc/loom/pki"
)

// Stdio is a command's standard streams.
type Stdio struct {
	In       io.Reader
	Out, Err io.Writer
}

// RunFunc runs a command with the arguments after its name and returns
// the exit status.
type RunFunc func(ctx context.Context, args []string, sio Stdio) int

// Daemons gives the run function of the command that path names (its
// words after loom, such as "bench", "allreduce"), for each command that
// links the daemons' dependencies. loom's is one that execs loomd with
// the same words; loomd's runs the command itself.
type Daemons func(path ...string) RunFunc

// DefaultConfigPath is read when neither --config nor $LOOM_CONFIG says
// which configuration file the daemons use.
const DefaultConfigPath = "/etc/loom/loom.toml"

// NetcollWorker is the internal command of one rank of loom bench
// allreduce (allreduce.WorkerArg, which loomd's tests hold to it).
const NetcollWorker = "netcoll-worker"

// ExecShim is the internal command that starts an isolated rank in its
// cgroup (agent/driver/exec.ShimCommand; loomd's tests check they agree).
const ExecShim = "exec-shim"

// Run runs the command argv names and returns the exit status. version is
// what loom version prints.
func Run(ctx context.Context, argv []string, sio Stdio, version string, daemons Daemons) int {
	table := Table(version, daemons)
	if prog := filepath.Base(argv[0]); slices.Contains(cli.Commands(), prog) {
		return dispatch(ctx, table, append([]string{"slurm", prog}, argv[1:]...), sio)
	}
	if len(argv) < 2 {
		fmt.Fprint(sio.Err, usage(table))
		return 2
	}
	return dispatch(ctx, table, argv[1:], sio)
}

// Command is one entry of loom's command table. The table dispatches
// `loom <name> [<sub>...] args` and prints the usage text, so that the
// help lists exactly what loom accepts.
type Command struct {
	name    string   // the word that selects it, after loom or after its parent
	aliases []string // other words that select it
	args    string   // synopsis after the name in the usage text
	// summary is its line in the usage text; an entry without one is
	// listed by its parent's summary (slurm's commands) or its
	// subcommands' lines.
	summary string
	// internal commands are started by loom itself, not by users; the
	// usage text lists them apart.
	internal bool
	// run runs it. When a name after it matches none of subs, run gets
	// them as arguments; when run is nil, that is a usage error.
	run  RunFunc
	subs []*Command
	// unknownSub is the message when no subcommand is named, from the
	// subcommands' names; nil says which exist.
	unknownSub func(names []string) string
}

// names returns c's name and aliases.
func (c *Command) names() []string { return append([]string{c.name}, c.aliases...) }

// Table returns every command loom accepts, in the order the usage text
// lists them; daemons gives the run functions of those that link the
// daemons' dependencies.
func Table(version string, daemons Daemons) []*Command {
	d := daemons
	var table []*Command
	help := func(_ context.Context, _ []string, sio Stdio) int {
		fmt.Fprint(sio.Out, usage(table))
		return 0
	}
	table = []*Command{
		{name: "server", args: "[flags]", summary: "run a control-plane server", run: d("server")},
		{name: "agent", args: "[flags]", summary: "run a node agent", run: d("agent")},
		{name: "dev", args: "[flags]", summary: "run a server and simulated agents in one process", run: d("dev")},
		{name: "config", subs: []*Command{
			{name: "check", args: "[FILE]", summary: "validate a configuration file (default " + DefaultConfigPath + ")", run: d("config", "check")},
		}},
		{name: "slurm", args: "<cmd> [args]", summary: "sbatch, srun, salloc, squeue, scancel, sinfo, sacct, scontrol",
			subs: cliCommands(cli.Commands()),
			unknownSub: func(names []string) string {
				return fmt.Sprintf("name one of %v", names)
			}},
		{name: "logs", args: "[-f] JOB [RANK]", summary: "stream a job's output", run: cliCommand("logs")},
		{name: "node", args: "drain|resume|list", summary: "take nodes out of service and back", run: cliCommand("node")},
		{name: "report", args: "cluster utilization|user top|account usage [flags]", summary: "CPU and GPU usage over a time window (like sreport)", run: cliCommand("report")},
		{name: "operator", run: cliCommand("operator"), subs: []*Command{
			// raft's commands are cli's; only the line in the usage is here.
			{name: "raft", args: "list-peers|remove-peer ID", summary: "the control plane's membership"},
			{name: "snapshot", args: "save|inspect|restore FILE", summary: "back up the cluster's state, or replace it with a backup"},
			{name: "gossip", subs: []*Command{
				{name: "keygen", summary: "a new gossip encryption key", run: d("operator", "gossip", "keygen")},
			}},
		}},
		{name: "tls", subs: []*Command{
			{name: "ca", subs: []*Command{
				{name: "create", args: "[flags]", summary: "a new certificate authority for the cluster", run: tlsCommand("ca", "create")},
			}},
			{name: "cert", subs: []*Command{
				{name: "create", args: "--server NAME|--agent NODE|--cli", summary: "a certificate signed by the CA, naming its role", run: tlsCommand("cert", "create")},
			}},
		}},
		{name: "image", subs: []*Command{
			{name: "import", args: "FILE.tar", summary: "load an OCI archive for the agents' containerd driver", run: d("image", "import")},
		}},
		{name: "gpu", subs: []*Command{
			{name: "topo", args: "[flags]", summary: "print a node's GPU topology like nvidia-smi topo -m", run: d("gpu", "topo")},
		}},
		{name: "bench", unknownSub: func(names []string) string {
			return "known benchmarks: " + strings.Join(names, ", ")
		}, subs: []*Command{
			{name: "allreduce", args: "[flags]", summary: "netcoll collectives benchmark (nccl-tests style)", run: d("bench", "allreduce")},
			{name: "submit", args: "[flags]", summary: "control-plane submit throughput and leader failover", run: d("bench", "submit")},
			{name: "failover", args: "[flags]", summary: "node failure detection and gang requeue times", run: d("bench", "failover")},
			{name: "sched", args: "[flags]", summary: "time one scheduling cycle on a large synthetic cluster", run: d("bench", "sched")},
			{name: "e2e", args: "[flags]", summary: "submit, start, drain and squeue times through the real Slurm commands on a dev cluster", run: d("bench", "e2e")},
			{name: "train", args: "[flags]", summary: "MNIST training throughput with 1, 2, 4 ranks (runs bin/mnist bench)", run: d("bench", "train")},
			{name: "client", args: "[flags]", summary: "a loom client process's wall time: loom version and sbatch, median of many", run: d("bench", "client")},
		}},
		{name: "sim", args: "[flags]", summary: "replay a job trace through the scheduler (virtual clock)", run: d("sim")},
		{name: "priority", args: "[JOBID...]", summary: "pending jobs' priority factors (like sprio)", run: WithContext(cli.Priority)},
		{name: "why", args: "JOBID", summary: "why a job is pending, and when it should start", run: WithContext(cli.Why)},
		{name: "version", aliases: []string{"--version"}, summary: "print the version (also --version)", run: printVersion(version)},
		{name: "help", aliases: []string{"-h", "--help"}, summary: "print this text (also -h, --help)", run: help},
		{name: "containerd-logger", args: "[flags]", internal: true,
			summary: "write a rank container's output (containerd's shim starts it)", run: d("containerd-logger")},
		{name: ExecShim, args: "[flags] -- COMMAND", internal: true,
			summary: "start an isolated rank in its cgroup (the agent's exec driver starts it)", run: d(ExecShim)},
		{name: NetcollWorker, args: "[flags]", internal: true,
			summary: "one rank of loom bench allreduce (the benchmark starts it)", run: d(NetcollWorker)},
	}
	return table
}

// cliCommands makes an entry for each of cli's commands.
func cliCommands(names []string) []*Command {
	var cmds []*Command
	for _, n := range names {
		cmds = append(cmds, &Command{name: n, run: cliCommand(n)})
	}
	return cmds
}

// cliCommand runs cli's command name.
func cliCommand(name string) RunFunc {
	return func(ctx context.Context, args []string, sio Stdio) int {
		return cli.Run(ctx, name, args, sio.In, sio.Out, sio.Err)
	}
}

// tlsCommand runs `loom tls WORDS...` (package pki parses it all).
func tlsCommand(words ...string) RunFunc {
	return func(_ context.Context, args []string, sio Stdio) int {
		return pki.Command(append(words, args...), sio.Out, sio.Err)
	}
}

// WithContext adapts a Main that takes a context to the table.
func WithContext(main func(ctx context.Context, args []string, stdout, stderr io.Writer) int) RunFunc {
	return func(ctx context.Context, args []string, sio Stdio) int {
		return main(ctx, args, sio.Out, sio.Err)
	}
}

func printVersion(version string) RunFunc {
	return func(_ context.Context, _ []string, sio Stdio) int {
		fmt.Fprintln(sio.Out, "loom", version)
		return 0
	}
}

// lookup finds the command that args name in table and the arguments it
// gets. It returns nil and the entry whose subcommand is missing, or nil
// and nil when args name no command at all.
func lookup(table []*Command, args []string) (run RunFunc, rest []string, missing *Command) {
	var path []*Command
	list := table
	for _, a := range args {
		i := slices.IndexFunc(list, func(c *Command) bool { return slices.Contains(c.names(), a) })
		if i < 0 {
			break
		}
		path = append(path, list[i])
		list = list[i].subs
	}
	// The deepest entry that runs gets what follows it.
	for d := len(path) - 1; d >= 0; d-- {
		if path[d].run != nil {
			return path[d].run, args[d+1:], nil
		}
	}
	if len(path) == 0 {
		return nil, nil, nil
	}
	return nil, nil, path[len(path)-1]
}

// dispatch runs the command args name and returns its exit status.
func dispatch(ctx context.Context, table []*Command, args []string, sio Stdio) int {
	run, rest, missing := lookup(table, args)
	switch {
	case run != nil:
		return run(ctx, rest, sio)
	case missing != nil:
		fmt.Fprintf(sio.Err, "loom %s: %s\n", missing.name, missing.unknownSubMessage())
		return 2
	}
	fmt.Fprintf(sio.Err, "loom: unknown command %q\n\n%s", args[0], usage(table))
	return 2
}

// unknownSubMessage says which subcommands c has.
func (c *Command) unknownSubMessage() string {
	var names []string
	for _, s := range c.subs {
		names = append(names, s.name)
	}
	switch {
	case c.unknownSub != nil:
		return c.unknownSub(names)
	case len(names) == 1:
		return "the only subcommand is " + names[0]
	}
	return "known subcommands: " + strings.Join(names, ", ")
}

const (
	usageHead = "loom: a gang scheduler for GPU clusters\n\nUsage:\n"
	usageFoot = `
The Slurm commands also run as themselves when loom is linked or copied
under their names (make build creates bin/sbatch etc.). Servers are found
through LOOM_ADDR (comma-separated; unix:///PATH for a server's local
socket), else servers in [cli] of /etc/loom/loom.toml, else the dev
cluster this user started, else 127.0.0.1:7070.
Run "loom <command> --help" for a command's flags.
`
	// usageColumn is where summaries start.
	usageColumn = 32
)

// usage is the usage text: a line for each entry of table that has a
// summary, the internal ones apart.
func usage(table []*Command) string {
	var b, internal strings.Builder
	b.WriteString(usageHead)
	for _, c := range table {
		w := &b
		if c.internal {
			w = &internal
		}
		writeUsage(w, "loom", c)
	}
	if internal.Len() > 0 {
		b.WriteString("\nStarted by loom itself, not by users:\n")
		b.WriteString(internal.String())
	}
	b.WriteString(usageFoot)
	return b.String()
}

func writeUsage(w *strings.Builder, prefix string, c *Command) {
	path := prefix + " " + c.name
	if c.summary != "" {
		line := "  " + strings.TrimSpace(path+" "+c.args)
		fmt.Fprintf(w, "%-*s%s\n", max(usageColumn, len(line)+2), line, c.summary)
		if c.args != "" {
			// Its synopsis stands for its subcommands (slurm <cmd>).
			return
		}
	}
	for _, s := range c.subs {
		writeUsage(w, path, s)
	}
}
