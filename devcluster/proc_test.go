package devcluster

import "syscall"

// processAlive reports whether pid exists. Ranks are this test process's
// children and the exec driver reaps them, so no zombie lingers to fool it.
func processAlive(pid int) bool { return syscall.Kill(pid, 0) == nil }
