// Package backup is the file format of `loom operator snapshot`: a
// header naming the state's Raft index, term and leader, with the size
// and SHA-256 checksum of the state that follows it, then the state
// itself as a Raft snapshot of package state holds it. Read refuses a
// file whose state does not match its header, naming the mismatch, so a
// corrupt or truncated backup is never restored.
package backup
