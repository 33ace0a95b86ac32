// Package sched is `loom bench sched`: it times one full scheduling
// cycle (priority, placement, reservations and backfill) over a large
// synthetic cluster that is partly busy, with a Philly-like job-size mix.
package sched
