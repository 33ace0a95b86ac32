package cli

import (
	"context"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/loomhpc/loom/api"
	"github.com/loomhpc/loom/clusterconf"
)

// showConfig is scontrol show config: the effective scheduling settings,
// Slurm-like "Key = value" lines, defaults shown as the values in force.
func showConfig(ctx context.Context, e *env, c *client, o scontrolOpts) int {
	cfg, err := c.clusterConfig(ctx)
	if err != nil {
		return e.fail(err)
	}
	if o.json {
		if cfg == nil {
			cfg = &api.ClusterConfig{}
		}
		if err := writeJSON(e.stdout, cfg); err != nil {
			return e.fail(err)
		}
		return 0
	}
	src := "(defaults: no configuration was ever replicated)"
	if cfg != nil {
		src = fmt.Sprintf("%s (sha256 %s), loaded by %s at %s", orDash(cfg.Source), short(cfg.Sha256), orDash(cfg.LoadedBy),
			time.UnixMilli(cfg.LoadedUnixMs).Format("2006-01-02T15:04:05"))
	}
	fmt.Fprintf(e.stdout, "Configuration data as of %s\n", src)
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 1, ' ', 0)
	for _, s := range clusterconf.Settings(cfg) {
		fmt.Fprintf(tw, "%s\t= %s\n", s.Key, s.Value)
	}
	tw.Flush()
	return 0
}
