// Package cli implements Loom's user commands with Slurm's names, options
// and output: sbatch, squeue, scancel, sinfo, sacct and scontrol, plus
// `loom logs`, `loom priority` and `loom why`. Each command parses its
// arguments (sbatch also the #SBATCH lines of a batch script), calls the
// JobService or NodeService gRPC API on the first reachable server in
// LOOM_ADDR, and prints what Slurm would, or the API objects as protojson
// with --json. It talks to nothing but the gRPC API. cmd/loom calls Run,
// Priority and Why; docs/slurm-compat.md lists what is supported.
package cli
