// Package client is `loom bench client`: it times how long one process of
// the loom client takes from exec to exit, the figure users pay for every
// sbatch, squeue or sacct in a shell loop or a workflow engine. It starts
// a dev cluster in this process (server and simulated agents, on a local
// socket and port 0), then runs `loom version` (start-up alone), `loom
// slurm sbatch --wrap true` (start-up, one submit RPC and exit) and
// /bin/true (the cost of fork and exec itself) many times each, one
// process at a time, and prints each one's median and 90th percentile as
// key=value. Then it makes the same submit from its own process, over one
// connection kept open (rpc_submit: the server's share of an sbatch) and
// over a connection dialled and closed for each (rpc_dial_submit).
package client
