package cli

import (
	"context"
	"fmt"
	"text/tabwriter"

	"github.com/loomhpc/loom/api"
	"github.com/loomhpc/loom/api/apiclient"
	"github.com/loomhpc/loom/rpcclient"
)

const operatorUsage = `Usage: loom operator raft list-peers [--json]
       loom operator raft remove-peer SERVER_ID
       loom operator snapshot save FILE [--json]
       loom operator snapshot inspect FILE [--json]
       loom operator snapshot restore FILE [--json]
       loom operator reload [--json]

Inspects and changes the control plane's Raft membership. To add a server
to a running cluster, start it with loom server --join ADDR.

snapshot save writes a consistent snapshot of the cluster's state, taken
on the leader, to FILE (mode 0600, written atomically, with a checksum);
inspect checks a file and describes it; restore replaces the cluster's
whole state with the file's (see docs/operations.md, Backup and restore).

reload makes the leader read its loom.toml again ([scheduler], [[qos]],
[[partition]], [topology]) and replicate it to every server; it prints
what changed, or "unchanged". A file that fails validation is refused
with its error and nothing changes (docs/configuration.md). SIGHUP to any
server does the same.

Options:
`

// runOperator is `loom operator ...`, the admin commands for the control
// plane itself.
func runOperator(ctx context.Context, e *env, args []string) int {
	var asJSON, help bool
	opts := []*option{
		{long: "json", arg: noArg, help: "print the API object as JSON", set: setBool(&asJSON, true)},
		{long: "help", short: 'h', arg: noArg, help: "show this help", set: setBool(&help, true)},
	}
	pos, err := parseAndApply(opts, args)
	if err != nil {
		return e.fail(err)
	}
	if help {
		return printHelp(e, operatorUsage, opts)
	}
	if len(pos) > 0 && pos[0] == "snapshot" {
		return runSnapshot(ctx, e, pos[1:], asJSON)
	}
	if len(pos) == 1 && pos[0] == "reload" {
		return runReload(ctx, e, asJSON)
	}
	if len(pos) < 2 || pos[0] != "raft" {
		return e.fail(&usageError{msg: "expected: raft list-peers | raft remove-peer SERVER_ID | snapshot save|inspect|restore FILE | reload"})
	}
	c, err := newClient(e)
	if err != nil {
		return e.fail(err)
	}
	defer c.Close()
	switch pos[1] {
	case "list-peers":
		var resp *api.RaftListPeersResponse
		err := c.do(ctx, true, func(ctx context.Context, cc *rpcclient.Conn) error {
			var err error
			resp, err = apiclient.NewOperatorClient(cc).RaftListPeers(ctx, &api.RaftListPeersRequest{})
			return err
		})
		if err != nil {
			return e.fail(err)
		}
		if asJSON {
			if err := writeJSON(e.stdout, resp); err != nil {
				return e.fail(err)
			}
			return 0
		}
		tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tRAFT ADDRESS\tAPI ADDRESS\tSTATE\tVOTER")
		for _, s := range resp.Servers {
			state := "follower"
			if s.Leader {
				state = "leader"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%v\n", s.Id, s.RaftAddr, orDash(s.RpcAddr), state, s.Voter)
		}
		tw.Flush()
		return 0
	case "remove-peer":
		if len(pos) != 3 {
			return e.fail(&usageError{msg: "remove-peer takes one SERVER_ID (see list-peers)"})
		}
		err := c.do(ctx, true, func(ctx context.Context, cc *rpcclient.Conn) error {
			_, err := apiclient.NewOperatorClient(cc).RaftRemovePeer(ctx, &api.RaftRemovePeerRequest{Id: pos[2]})
			return err
		})
		if err != nil {
			return e.fail(err)
		}
		fmt.Fprintf(e.stdout, "Removed server %s from the cluster\n", pos[2])
		return 0
	}
	return e.fail(&usageError{msg: fmt.Sprintf("unknown operator command raft %s (want list-peers or remove-peer)", pos[1])})
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// runReload is loom operator reload.
func runReload(ctx context.Context, e *env, asJSON bool) int {
	c, err := newClient(e)
	if err != nil {
		return e.fail(err)
	}
	defer c.Close()
	var resp *api.ReloadConfigResponse
	err = c.do(ctx, true, func(ctx context.Context, cc *rpcclient.Conn) error {
		var err error
		resp, err = apiclient.NewOperatorClient(cc).ReloadConfig(ctx, &api.ReloadConfigRequest{})
		return err
	})
	if err != nil {
		return e.fail(err)
	}
	if asJSON {
		if err := writeJSON(e.stdout, resp); err != nil {
			return e.fail(err)
		}
		return 0
	}
	if !resp.Changed {
		fmt.Fprintf(e.stdout, "unchanged (%s, sha256 %s)\n", orDash(resp.Config.GetSource()), orDash(short(resp.Config.GetSha256())))
		return 0
	}
	fmt.Fprintf(e.stdout, "reloaded %s (sha256 %s) at index %d\n", resp.Config.GetSource(), short(resp.Config.GetSha256()), resp.Index)
	for _, ch := range resp.Changes {
		fmt.Fprintf(e.stdout, "  %s\n", ch)
	}
	if len(resp.Changes) == 0 {
		fmt.Fprintln(e.stdout, "  (the file changed, but no scheduling setting did)")
	}
	return 0
}

func short(digest string) string {
	if len(digest) > 12 {
		return digest[:12]
	}
	return digest
}
