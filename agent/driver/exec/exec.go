package exec

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/loomhpc/loom/agent/driver"
)

// Driver runs ranks as processes.
type Driver struct {
	stateDir string // where each running rank's pid file lives; "" for none
	log      *slog.Logger
	iso      *Isolation // nil: ranks run unconfined
}

// New returns the exec driver. With a state dir it records each rank's
// process there, so that a restarted agent can stop ranks left running by
// the agent before it.
func New(stateDir string, log *slog.Logger) *Driver {
	if log == nil {
		log = slog.Default()
	}
	return &Driver{stateDir: stateDir, log: log}
}

// NewIsolated returns the exec driver confining every rank as iso says,
// keeping its records (pid and exit files of the ranks' shims) in
// stateDir, which is required.
func NewIsolated(stateDir string, iso Isolation, log *slog.Logger) (*Driver, error) {
	if stateDir == "" || iso.Cgroups == nil || len(iso.Shim) == 0 {
		return nil, errors.New("exec: an isolating driver needs a state dir, a cgroup manager and a shim command")
	}
	// The state dir is made at the first start: made now, MkdirAll would
	// give the agent's data dir above it mode 0700 before the agent makes
	// it passable (0711) for the users whose scripts are in it.
	d := New(stateDir, log)
	d.iso = &iso
	return d, nil
}

// Isolated says whether the driver confines its ranks.
func (d *Driver) Isolated() bool { return d.iso != nil }

// Name is "exec".
func (d *Driver) Name() string { return "exec" }

// The rank's output files are opened by a shell already running as the
// submitting user, so a root agent never writes where the user could not.
// "t" in $3 or $4 truncates stdout or stderr first.
const redirect = `out=$1; err=$2; tout=$3; terr=$4; shift 4
if [ "$tout" = t ]; then : >"$out" || exit 126; fi
exec >>"$out" </dev/null || exit 126
if [ "$err" = "$out" ]; then exec 2>&1; else
  if [ "$terr" = t ]; then : >"$err" || exit 126; fi
  exec 2>>"$err" || exit 126
fi
exec "$@"`

// syncedRedirect is redirect for a rank under the shim: once its output
// files are open it tells the shim (fd 3) and waits for the go (fd 4),
// by which time the job's private /tmp is in place. It prints
// LOOM_CPU_BIND_VERBOSE (--cpu-bind=verbose) to the rank's stderr, @PID@
// replaced by the pid the command runs as.
const syncedRedirect = `out=$1; err=$2; tout=$3; terr=$4; shift 4
if [ "$tout" = t ]; then : >"$out" || exit 126; fi
exec >>"$out" </dev/null || exit 126
if [ "$err" = "$out" ]; then exec 2>&1; else
  if [ "$terr" = t ]; then : >"$err" || exit 126; fi
  exec 2>>"$err" || exit 126
fi
echo >&3; exec 3>&-
read -r _ <&4 || exit 126
exec 4<&-
if [ -n "$LOOM_CPU_BIND_VERBOSE" ]; then
  v=$LOOM_CPU_BIND_VERBOSE; printf '%s%s%s\n' "${v%%@PID@*}" $$ "${v#*@PID@}" >&2
fi
exec "$@"`

// Start launches the rank. The process leads its own process group so a
// signal reaches everything it forked.
func (d *Driver) Start(ctx context.Context, s driver.TaskSpec) (driver.Handle, error) {
	if len(s.Argv) == 0 {
		return nil, fmt.Errorf("%w: %s: empty command", driver.ErrStart, s.ID)
	}
	if d.iso != nil {
		return d.startIsolated(s)
	}
	if s.PrivateTmp != nil && *s.PrivateTmp {
		// Never run the job with the node's shared /tmp instead.
		return nil, fmt.Errorf("%w: %s: the job's partition gives it a private /tmp and /dev/shm, which needs isolation; this node runs ranks without (--isolation=none, or no cgroups)", driver.ErrStart, s.ID)
	}
	args := append([]string{"-c", redirect, "loom-task", s.Stdout, s.Stderr, flagT(s.TruncateStdout), flagT(s.TruncateStderr)}, s.Argv...)
	cmd := osexec.Command("/bin/sh", args...)
	cmd.Env = s.Env
	cmd.Dir = s.Dir
	var setup strings.Builder
	cmd.Stderr = &limitedWriter{w: &setup, n: 4096}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if uint32(os.Geteuid()) != s.UID || uint32(os.Getegid()) != s.GID {
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: s.UID, Gid: s.GID, Groups: s.Groups}
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", driver.ErrStart, s.ID, err)
	}
	h := &handle{cmd: cmd, setup: &setup, Ending: driver.NewEnding()}
	if d.stateDir != "" {
		h.pidFile = d.pidFile(s.ID)
		if err := writePidFile(h.pidFile, cmd.Process.Pid); err != nil {
			d.log.Warn("recording a rank's process failed; a restarted agent could not stop it", "task", s.ID, "err", err)
		}
	}
	go h.reap()
	return h, nil
}

type handle struct {
	cmd     *osexec.Cmd
	setup   *strings.Builder
	pidFile string // "" when not recorded
	*driver.Ending
}

func (h *handle) reap() { h.End(h.wait()) }

// wait waits for the process and works out how it ended.
func (h *handle) wait() (driver.Exit, error) {
	err := h.cmd.Wait()
	var ee *osexec.ExitError
	if err == nil || !errors.As(err, &ee) {
		return driver.Exit{}, err
	}
	var ex driver.Exit
	ws := ee.Sys().(syscall.WaitStatus)
	if ws.Signaled() {
		ex.Signal = int(ws.Signal())
	} else {
		ex.Code = ws.ExitStatus()
	}
	if ex.Code == 126 && h.setup.Len() > 0 {
		return ex, fmt.Errorf("%w: %s", driver.ErrStart, strings.TrimSpace(h.setup.String()))
	}
	return ex, nil
}

func (h *handle) Signal(sig syscall.Signal) error {
	if h.Ended() {
		return nil
	}
	return syscall.Kill(-h.cmd.Process.Pid, sig)
}

func (h *handle) PID() int { return h.cmd.Process.Pid }

// Cleanup forgets the rank's process record; the process itself was
// reaped by Wait.
func (h *handle) Cleanup(context.Context) error {
	if h.pidFile == "" {
		return nil
	}
	if err := os.Remove(h.pidFile); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// Recover re-attaches to isolated ranks by their cgroups (see
// recoverIsolated). An unconfined rank it cannot re-attach to: a process whose parent agent died cannot
// be waited for by the next agent, so its exit status would be a guess.
// The agent reports such ranks lost, and the job is requeued or failed.
// Ranks the previous agent recorded that still run are killed first, with
// their whole process group, so that the requeued gang does not share its
// GPUs with them. A record is trusted only while its process is the one it
// names (same start time): a pid reused by another process is left alone.
func (d *Driver) Recover(_ context.Context, known []string) (map[string]driver.Handle, error) {
	if d.iso != nil {
		return d.recoverIsolated(known)
	}
	if d.stateDir == "" {
		return nil, nil
	}
	files, err := filepath.Glob(filepath.Join(d.stateDir, "*"+pidSuffix))
	if err != nil {
		return nil, err
	}
	for _, f := range files {
		task := strings.TrimSuffix(filepath.Base(f), pidSuffix)
		pid, start, err := readPidFile(f)
		switch {
		case err != nil:
			d.log.Warn("unreadable rank record", "file", f, "err", err)
		case processStart(pid) == start:
			if err := syscall.Kill(-pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
				d.log.Warn("stopping a rank the previous agent left failed", "task", task, "pid", pid, "err", err)
			} else {
				d.log.Warn("stopped a rank the previous agent left running; its job is requeued", "task", task, "pid", pid)
			}
		}
		if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
	}
	return nil, nil
}

const pidSuffix = ".pid"

func (d *Driver) pidFile(task string) string {
	return filepath.Join(d.stateDir, task+pidSuffix)
}

// writePidFile records pid with its start time.
func writePidFile(path string, pid int) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	return os.WriteFile(path, []byte(fmt.Sprintf("%d %d\n", pid, processStart(pid))), 0o600)
}

func readPidFile(path string) (pid int, start uint64, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, 0, err
	}
	if _, err := fmt.Sscanf(string(b), "%d %d", &pid, &start); err != nil || pid <= 0 || start == 0 {
		return 0, 0, fmt.Errorf("malformed %q", strings.TrimSpace(string(b)))
	}
	return pid, start, nil
}

// processStart is when process pid started, in clock ticks after boot
// (/proc/PID/stat field 22), or 0 when there is no such process.
func processStart(pid int) uint64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The command name (field 2) may hold spaces and parentheses: count
	// fields from the last ')'.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return 0
	}
	v, err := strconv.ParseUint(f[19], 10, 64)
	if err != nil {
		return 0
	}
	return v
}

// limitedWriter keeps the first n bytes: the shell's own complaint about an
// output file it could not open.
type limitedWriter struct {
	mu sync.Mutex
	w  *strings.Builder
	n  int
}

func (l *limitedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if room := l.n - l.w.Len(); room > 0 {
		l.w.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

func flagT(b bool) string {
	if b {
		return "t"
	}
	return "-"
}
