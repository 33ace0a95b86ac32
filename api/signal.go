package api

import (
	"fmt"
	"strconv"
	"strings"
	"syscall"
)

// DefaultSignalLeadS is how long before the time limit --signal fires when
// no @SECS is given (Slurm's default).
const DefaultSignalLeadS = 60

var signalNames = map[string]syscall.Signal{
	"HUP": syscall.SIGHUP, "INT": syscall.SIGINT, "QUIT": syscall.SIGQUIT, "KILL": syscall.SIGKILL,
	"USR1": syscall.SIGUSR1, "USR2": syscall.SIGUSR2, "ALRM": syscall.SIGALRM, "TERM": syscall.SIGTERM,
	"CONT": syscall.SIGCONT, "STOP": syscall.SIGSTOP, "TSTP": syscall.SIGTSTP, "URG": syscall.SIGURG,
	"XCPU": syscall.SIGXCPU, "XFSZ": syscall.SIGXFSZ, "PWR": syscall.SIGPWR,
}

// ParseSignal reads --signal=[{R|B}:]SIG[@SECS]: SIG by name (USR1,
// SIGUSR1) or number, SECS before the time limit (default 60). With B:
// only the batch step gets it, otherwise the job's other steps (and every
// rank of a gang); SignalBatchOnly tells the two apart.
func ParseSignal(s string) (syscall.Signal, int64, error) {
	v := s
	if len(v) > 2 && (v[:2] == "R:" || v[:2] == "B:") {
		v = v[2:]
	}
	name, secs, hasSecs := strings.Cut(v, "@")
	lead := int64(DefaultSignalLeadS)
	if hasSecs {
		n, err := strconv.ParseInt(secs, 10, 64)
		if err != nil || n < 0 || n > 65535 {
			return 0, 0, fmt.Errorf("%q: seconds %q is not a number from 0 to 65535", s, secs)
		}
		lead = n
	}
	if n, err := strconv.Atoi(name); err == nil {
		if n <= 0 || n > 64 {
			return 0, 0, fmt.Errorf("%q: signal number %d is out of range", s, n)
		}
		return syscall.Signal(n), lead, nil
	}
	sig, ok := signalNames[strings.TrimPrefix(strings.ToUpper(name), "SIG")]
	if !ok {
		return 0, 0, fmt.Errorf("%q: unknown signal %q (USR1, USR2, TERM, INT, HUP, or a number)", s, name)
	}
	return sig, lead, nil
}
