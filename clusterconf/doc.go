// Package clusterconf reads the cluster configuration an admin writes in
// loom.toml — the [scheduler] table, [[qos]] and [[partition]] tables and
// [topology] — into one api.ClusterConfig, validates it, and turns it into
// the scheduler's Config. The server (which replicates what its file
// holds), `loom config check` and `loom dev --config` share it, so a file
// means the same thing everywhere. Every error names the file, the line
// and the key.
package clusterconf
