// Package simcmd is `loom sim`: it parses the command's flags, reads the
// trace and the VC sizes, runs package sim (the scheduler under a virtual
// clock) on each cluster, and prints the summary as key=value lines.
package simcmd
