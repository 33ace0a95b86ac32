package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/loomhpc/loom/agent/driver/containerd"
	"github.com/loomhpc/loom/agent/driver/exec"
	"github.com/loomhpc/loom/cli"
	"github.com/loomhpc/loom/gossip"
	"github.com/loomhpc/loom/internal/bench/allreduce"
	"github.com/loomhpc/loom/internal/bench/failover"
	"github.com/loomhpc/loom/internal/bench/sched"
	"github.com/loomhpc/loom/internal/bench/submit"
	"github.com/loomhpc/loom/internal/bench/train"
	"github.com/loomhpc/loom/internal/simcmd"
	"github.com/loomhpc/loom/internal/topocmd"
	"github.com/loomhpc/loom/pki"
)

// stdio is a command's standard streams.
type stdio struct {
	in       io.Reader
	out, err io.Writer
}

// runFunc runs a command with the arguments after its name and returns
// the exit status.
type runFunc func(ctx context.Context, args []string, sio stdio) int

// command is one entry of loom's command table. The table dispatches
// `loom <name> [<sub>...] args` and prints the usage text, so that the
// help lists exactly what loom accepts.
type command struct {
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
	run  runFunc
	subs []*command
	// unknownSub is the message when no subcommand is named, from the
	// subcommands' names; nil says which exist.
	unknownSub func(names []string) string
}

// names returns c's name and aliases.
func (c *command) names() []string { return append([]string{c.name}, c.aliases...) }

// commandTable returns every command loom accepts, in the order the usage
// text lists them.
func commandTable() []*command {
	var table []*command
	help := func(_ context.Context, _ []string, sio stdio) int {
		fmt.Fprint(sio.out, usage(table))
		return 0
	}
	table = []*command{
		{name: "server", args: "[flags]", summary: "run a control-plane server", run: runServer},
		{name: "agent", args: "[flags]", summary: "run a node agent", run: runAgent},
		{name: "dev", args: "[flags]", summary: "run a server and simulated agents in one process", run: runDev},
		{name: "config", subs: []*command{
			{name: "check", args: "[FILE]", summary: "validate a configuration file (default " + DefaultConfigPath + ")", run: configCheckMain},
		}},
		{name: "slurm", args: "<cmd> [args]", summary: "sbatch, srun, salloc, squeue, scancel, sinfo, sacct, scontrol",
			subs: cliCommands(cli.Commands()),
			unknownSub: func(names []string) string {
				return fmt.Sprintf("name one of %v", names)
			}},
		{name: "logs", args: "[-f] JOB [RANK]", summary: "stream a job's output", run: cliCommand("logs")},
		{name: "node", args: "drain|resume|list", summary: "take nodes out of service and back", run: cliCommand("node")},
		{name: "operator", run: cliCommand("operator"), subs: []*command{
			// raft's commands are cli's; only the line in the usage is here.
			{name: "raft", args: "list-peers|remove-peer ID", summary: "the control plane's membership"},
			{name: "gossip", subs: []*command{
				{name: "keygen", summary: "a new gossip encryption key", run: gossipKeygen},
			}},
		}},
		{name: "tls", subs: []*command{
			{name: "ca", subs: []*command{
				{name: "create", args: "[flags]", summary: "a new certificate authority for the cluster", run: tlsCommand("ca", "create")},
			}},
			{name: "cert", subs: []*command{
				{name: "create", args: "--server NAME|--agent NODE|--cli", summary: "a certificate signed by the CA, naming its role", run: tlsCommand("cert", "create")},
			}},
		}},
		{name: "image", subs: []*command{
			{name: "import", args: "FILE.tar", summary: "load an OCI archive for the agents' containerd driver", run: imageImport},
		}},
		{name: "gpu", subs: []*command{
			{name: "topo", args: "[flags]", summary: "print a node's GPU topology like nvidia-smi topo -m", run: withWriters(topocmd.TopoMain)},
		}},
		{name: "bench", unknownSub: func(names []string) string {
			return "known benchmarks: " + strings.Join(names, ", ")
		}, subs: []*command{
			{name: "allreduce", args: "[flags]", summary: "netcoll collectives benchmark (nccl-tests style)", run: withWriters(allreduce.Main)},
			{name: "submit", args: "[flags]", summary: "control-plane submit throughput and leader failover", run: withWriters(submit.Main)},
			{name: "failover", args: "[flags]", summary: "node failure detection and gang requeue times", run: withWriters(failover.Main)},
			{name: "sched", args: "[flags]", summary: "time one scheduling cycle on a large synthetic cluster", run: withWriters(sched.Main)},
			{name: "train", args: "[flags]", summary: "MNIST training throughput with 1, 2, 4 ranks (runs bin/mnist bench)", run: benchTrain},
		}},
		{name: "sim", args: "[flags]", summary: "replay a job trace through the scheduler (virtual clock)", run: withWriters(simcmd.Main)},
		{name: "priority", args: "[JOBID...]", summary: "pending jobs' priority factors (like sprio)", run: withContext(cli.Priority)},
		{name: "why", args: "JOBID", summary: "why a job is pending, and when it should start", run: withContext(cli.Why)},
		{name: "version", aliases: []string{"--version"}, summary: "print the version (also --version)", run: printVersion},
		{name: "help", aliases: []string{"-h", "--help"}, summary: "print this text (also -h, --help)", run: help},
		{name: "containerd-logger", args: "[flags]", internal: true,
			summary: "write a rank container's output (containerd's shim starts it)", run: containerdLogger},
		{name: exec.ShimCommand, args: "[flags] -- COMMAND", internal: true,
			summary: "start an isolated rank in its cgroup (the agent's exec driver starts it)", run: execShim},
		{name: allreduce.WorkerArg, args: "[flags]", internal: true,
			summary: "one rank of loom bench allreduce (the benchmark starts it)", run: netcollWorker},
	}
	return table
}

// cliCommands makes an entry for each of cli's commands.
func cliCommands(names []string) []*command {
	var cmds []*command
	for _, n := range names {
		cmds = append(cmds, &command{name: n, run: cliCommand(n)})
	}
	return cmds
}

// cliCommand runs cli's command name.
func cliCommand(name string) runFunc {
	return func(ctx context.Context, args []string, sio stdio) int {
		return cli.Run(ctx, name, args, sio.in, sio.out, sio.err)
	}
}

// withWriters adapts a tool's Main to the table.
func withWriters(main func(args []string, stdout, stderr io.Writer) int) runFunc {
	return func(_ context.Context, args []string, sio stdio) int {
		return main(args, sio.out, sio.err)
	}
}

// tlsCommand runs `loom tls WORDS...` (package pki parses it all).
func tlsCommand(words ...string) runFunc {
	return func(_ context.Context, args []string, sio stdio) int {
		return pki.Command(append(words, args...), sio.out, sio.err)
	}
}

// withContext adapts a Main that takes a context to the table.
func withContext(main func(ctx context.Context, args []string, stdout, stderr io.Writer) int) runFunc {
	return func(ctx context.Context, args []string, sio stdio) int {
		return main(ctx, args, sio.out, sio.err)
	}
}

func gossipKeygen(ctx context.Context, args []string, sio stdio) int {
	if len(args) > 0 {
		// cli's operator command reports the usage error, as it did
		// before keygen had its own entry.
		return cli.Run(ctx, "operator", append([]string{"gossip", "keygen"}, args...), sio.in, sio.out, sio.err)
	}
	k, err := gossip.GenerateKey()
	if err != nil {
		fmt.Fprintln(sio.err, "loom operator gossip keygen:", err)
		return 1
	}
	fmt.Fprintln(sio.out, k)
	return 0
}

func imageImport(_ context.Context, args []string, sio stdio) int {
	return containerd.ImportMain(append([]string{"import"}, args...), sio.out, sio.err)
}

func benchTrain(ctx context.Context, args []string, sio stdio) int {
	return train.Main(ctx, args, sio.out, sio.err)
}

func printVersion(_ context.Context, _ []string, sio stdio) int {
	fmt.Fprintln(sio.out, "loom", version)
	return 0
}

func containerdLogger(_ context.Context, args []string, sio stdio) int {
	return containerd.LoggerMain(args, sio.err)
}

func execShim(_ context.Context, args []string, sio stdio) int {
	return exec.ShimMain(args, sio.err)
}

func netcollWorker(_ context.Context, args []string, _ stdio) int {
	// The worker writes its rows to the process's own stdout, which the
	// benchmark reads.
	return allreduce.WorkerMain(args)
}

// lookup finds the command that args name in table and the arguments it
// gets. It returns nil and the entry whose subcommand is missing, or nil
// and nil when args name no command at all.
func lookup(table []*command, args []string) (run runFunc, rest []string, missing *command) {
	var path []*command
	list := table
	for _, a := range args {
		i := slices.IndexFunc(list, func(c *command) bool { return slices.Contains(c.names(), a) })
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
func dispatch(ctx context.Context, table []*command, args []string, sio stdio) int {
	run, rest, missing := lookup(table, args)
	switch {
	case run != nil:
		return run(ctx, rest, sio)
	case missing != nil:
		fmt.Fprintf(sio.err, "loom %s: %s\n", missing.name, missing.unknownSubMessage())
		return 2
	}
	fmt.Fprintf(sio.err, "loom: unknown command %q\n\n%s", args[0], usage(table))
	return 2
}

// unknownSubMessage says which subcommands c has.
func (c *command) unknownSubMessage() string {
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
func usage(table []*command) string {
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

func writeUsage(w *strings.Builder, prefix string, c *command) {
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
