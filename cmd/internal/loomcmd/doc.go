// Package loomcmd is loom's command table, shared by the two binaries that
// run it: loom, the lean client users and scripts type (the Slurm
// commands, logs, why, priority, operator and node commands, tls, version,
// help), and loomd, which holds the daemons and the tools that link their
// dependencies (containerd, Raft, Prometheus, NVML, memberlist). Both run
// the same table, so that both accept every command and print the same
// usage text; the Daemons each passes says how the daemons' entries run:
// loom execs loomd with the same words, loomd runs them itself.
//
// This package links only the client's dependencies (cli, pki, the API and
// gRPC); internal/layering checks that loom stays that way.
package loomcmd
