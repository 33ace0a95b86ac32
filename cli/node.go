package cli

import (
	"context"
	"strings"
)

const nodeUsage = `Usage: loom node drain NODE --reason "TEXT"
       loom node resume NODE
       loom node list

Drains a node (running jobs finish, nothing new lands), returns it to
service, or lists the nodes. The same as scontrol update nodename=NODE
state=drain|resume reason=..., and sinfo -N.

Options:
`

// runNode is `loom node ...`, Loom's spelling of the node commands.
func runNode(ctx context.Context, e *env, args []string) int {
	var reason string
	var help bool
	opts := []*option{
		{long: "reason", arg: requiredArg, meta: "TEXT", help: "why the node is drained (required for drain)", set: func(v string) error { reason = v; return nil }},
		{long: "help", short: 'h', arg: noArg, help: "show this help", set: setBool(&help, true)},
	}
	pos, err := parseAndApply(opts, args)
	if err != nil {
		return e.fail(err)
	}
	if help {
		return printHelp(e, nodeUsage, opts)
	}
	switch {
	case len(pos) == 1 && pos[0] == "list":
		return runSinfo(ctx, e.rename("sinfo"), []string{"-N"})
	case len(pos) == 2 && pos[0] == "drain":
		if strings.TrimSpace(reason) == "" {
			return e.fail(&usageError{msg: "drain needs --reason \"TEXT\" (as in Slurm)"})
		}
		return runScontrol(ctx, e.rename("scontrol"), []string{"update", "nodename=" + pos[1], "state=drain", "reason=" + reason})
	case len(pos) == 2 && pos[0] == "resume":
		return runScontrol(ctx, e.rename("scontrol"), []string{"update", "nodename=" + pos[1], "state=resume"})
	}
	return e.fail(&usageError{msg: "expected: node drain NODE --reason TEXT | node resume NODE | node list"})
}

// rename returns a copy of e that runs (and prefixes its messages as)
// another command.
func (e *env) rename(name string) *env {
	c := *e
	c.name = name
	return &c
}
