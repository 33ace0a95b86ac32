package agent

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/loomhpc/loom/auth"
)

// The agent runs as root, but it must never read or create a file on a
// user's behalf with root's rights: `sbatch -o /etc/shadow` followed by
// `loom logs` would otherwise print the shadow file. Whatever it opens for
// a job it opens as the job's user: on one locked OS thread whose
// filesystem uid, gid and groups are the user's (Linux keeps these per
// thread; the raw system calls change that thread alone, where Go's
// syscall package would change every thread), put back before the thread
// runs anything else.

// errCredentials is wrapped by failures to take on or give back a user's
// filesystem credentials.
var errCredentials = errors.New("agent: switching filesystem credentials")

// asUser runs fn with the filesystem credentials of u when the agent runs
// as root, and as the agent itself otherwise (it can then act only for
// its own user, which taskSpec checks).
func asUser(u auth.User, fn func() error) error {
	if os.Geteuid() != 0 {
		return fn()
	}
	runtime.LockOSThread()
	restored := false
	defer func() {
		// A thread left with a user's credentials must not run other
		// goroutines: still locked when this goroutine's function
		// returns, it is ended by the runtime.
		if restored {
			runtime.UnlockOSThread()
		}
	}()
	saved, err := threadGroups()
	if err != nil {
		restored = true
		return err
	}
	groups := u.Groups
	if len(groups) == 0 {
		groups = []uint32{u.GID}
	}
	if err := setThreadGroups(groups); err != nil {
		restored = true
		return err
	}
	unix.RawSyscall(unix.SYS_SETFSGID, uintptr(u.GID), 0, 0)
	unix.RawSyscall(unix.SYS_SETFSUID, uintptr(u.UID), 0, 0)
	// setfsuid reports no errors: read the ids back to be sure.
	if fsID(unix.SYS_SETFSUID) != u.UID || fsID(unix.SYS_SETFSGID) != u.GID {
		restored = giveBack(saved) == nil
		return fmt.Errorf("%w: the kernel refused uid %d gid %d", errCredentials, u.UID, u.GID)
	}
	ferr := fn()
	if err := giveBack(saved); err != nil {
		return err
	}
	restored = true
	return ferr
}

// giveBack restores root's filesystem ids and the saved groups on this
// thread.
func giveBack(groups []uint32) error {
	unix.RawSyscall(unix.SYS_SETFSUID, 0, 0, 0)
	unix.RawSyscall(unix.SYS_SETFSGID, 0, 0, 0)
	if fsID(unix.SYS_SETFSUID) != 0 || fsID(unix.SYS_SETFSGID) != 0 {
		return fmt.Errorf("%w: could not take back root's filesystem ids", errCredentials)
	}
	return setThreadGroups(groups)
}

// fsID returns the thread's current filesystem uid or gid (trap is
// SYS_SETFSUID or SYS_SETFSGID): given an invalid id, the call changes
// nothing and returns the current one.
func fsID(trap uintptr) uint32 {
	r, _, _ := unix.RawSyscall(trap, ^uintptr(0), 0, 0)
	return uint32(r)
}

// threadGroups returns this thread's supplementary groups.
func threadGroups() ([]uint32, error) {
	n, _, e := unix.RawSyscall(unix.SYS_GETGROUPS, 0, 0, 0)
	if e != 0 {
		return nil, fmt.Errorf("%w: getgroups: %v", errCredentials, e)
	}
	if n == 0 {
		return nil, nil
	}
	gs := make([]uint32, n)
	n, _, e = unix.RawSyscall(unix.SYS_GETGROUPS, n, uintptr(unsafe.Pointer(&gs[0])), 0)
	if e != 0 {
		return nil, fmt.Errorf("%w: getgroups: %v", errCredentials, e)
	}
	return gs[:n], nil
}

// setThreadGroups sets this thread's supplementary groups.
func setThreadGroups(gs []uint32) error {
	var p uintptr
	if len(gs) > 0 {
		p = uintptr(unsafe.Pointer(&gs[0]))
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SETGROUPS, uintptr(len(gs)), p, 0); e != 0 {
		return fmt.Errorf("%w: setgroups: %v", errCredentials, e)
	}
	runtime.KeepAlive(gs)
	return nil
}

// openOutputAs opens a rank's output file for reading as u, refusing to
// follow a symlink put in its place (O_NOFOLLOW): the agent then reads
// only what u could read, whatever path the job named.
func openOutputAs(u auth.User, path string) (*os.File, error) {
	var f *os.File
	err := asUser(u, func() error {
		var err error
		f, err = os.OpenFile(path, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
		return err
	})
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		f.Close()
		return nil, &os.PathError{Op: "open", Path: path, Err: errors.New("not a regular file")}
	}
	return f, nil
}

// checkJobPaths refuses a job whose working directory, output or error
// file its user could not use, naming the option: the agent creates
// nothing and reads nothing there with root's rights. It runs as u:
// the working directory must be searchable, and the output files
// creatable or writable, without following a symlink in their place.
func checkJobPaths(u auth.User, dir, stdout, stderr string) error {
	return asUser(u, func() error {
		// Resolving DIR/. needs search permission on DIR itself (not
		// filepath.Join, which would clean the dot away).
		d, err := os.OpenFile(strings.TrimSuffix(dir, "/")+"/.", unix.O_PATH|unix.O_DIRECTORY, 0)
		if err != nil {
			return fmt.Errorf("--chdir=%s: %s (uid %d) cannot use it: %w", dir, u.Name, u.UID, unwrapPath(err))
		}
		d.Close()
		for _, o := range []struct{ opt, path string }{{"--output", stdout}, {"--error", stderr}} {
			if o.path == "" {
				continue
			}
			f, err := os.OpenFile(o.path, os.O_WRONLY|os.O_CREATE|os.O_APPEND|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0o644)
			if err != nil {
				return fmt.Errorf("%s=%s: %s (uid %d) cannot write it: %w", o.opt, o.path, u.Name, u.UID, unwrapPath(err))
			}
			f.Close()
		}
		return nil
	})
}

// unwrapPath drops the path an *os.PathError repeats.
func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
