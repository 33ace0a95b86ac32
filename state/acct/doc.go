// Package acct is Loom's accounting store: the jobs that have left the
// replicated state (they finished more than min_job_age ago), kept in a
// bbolt file on every server so that sacct and scontrol answer for them
// from any server while the live state, its snapshots and the
// scheduler's view stay the size of the current workload.
//
// The FSM writes it at apply time (state.Archive), so every server
// writes the same records at the same log index. Records are keyed by job
// id and carry the index that archived them: applying an entry again
// after a restart rewrites nothing, and a record is never duplicated.
// The tasks of an array share one stored spec, as they do in the live
// state.
package acct
