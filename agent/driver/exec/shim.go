package exec

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	osexec "os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// ShimCommand is the loom internal command that starts an isolated rank.
const ShimCommand = "exec-shim"

// ShimMain is `loom exec-shim`: the root process that the exec driver
// starts for an isolated rank. It joins the rank's cgroup first, so that
// nothing the rank runs is ever outside it; binds the job's private /tmp
// and /dev/shm in its own mount namespace (the driver starts it in a new
// one); starts the rank as the job's user; and, when the rank ends, writes
// how it ended to the exit file. It outlives an agent restart, which is
// how a new agent learns the exit status of a rank it did not start.
func ShimMain(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet(ShimCommand, flag.ContinueOnError)
	fs.SetOutput(stderr)
	procs := fs.String("cgroup-procs", "", "cgroup.procs files to join, comma-separated")
	exitFile := fs.String("exit", "", "file to write the rank's exit status to")
	tmp := fs.String("tmp", "", "directory to bind on /tmp")
	shm := fs.String("shm", "", "directory to bind on /dev/shm")
	uid := fs.Int("uid", -1, "the rank's uid")
	gid := fs.Int("gid", -1, "the rank's gid")
	groups := fs.String("groups", "", "the rank's supplementary groups, comma-separated")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	argv := fs.Args()
	if len(argv) == 0 || *exitFile == "" || *uid < 0 || *gid < 0 {
		fmt.Fprintln(stderr, "loom exec-shim: want --exit, --uid, --gid and a command")
		return 2
	}
	fail := func(err error) int {
		fmt.Fprintln(stderr, "loom exec-shim:", err)
		return 126
	}
	pid := []byte(strconv.Itoa(os.Getpid()))
	for _, f := range strings.Split(*procs, ",") {
		if f == "" {
			continue
		}
		if err := os.WriteFile(f, pid, 0); err != nil {
			return fail(fmt.Errorf("joining the rank's cgroup: %w", err))
		}
	}
	// The binds wait until the rank has opened its output files (which may
	// well be under /tmp): the rank's shell says so on fd 3 and waits for
	// the go on fd 4 before it runs anything of the user's.
	binds, err := openBinds(*tmp, *shm)
	if err != nil {
		return fail(err)
	}
	exitDir, err := os.Open(filepath.Dir(*exitFile))
	if err != nil {
		return fail(fmt.Errorf("exit file: %w", err))
	}
	readyR, readyW, err := os.Pipe()
	if err != nil {
		return fail(err)
	}
	goR, goW, err := os.Pipe()
	if err != nil {
		return fail(err)
	}
	cmd := osexec.Command(argv[0], argv[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.ExtraFiles = []*os.File{readyW, goR}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if *uid != os.Geteuid() || *gid != os.Getegid() {
		cred := &syscall.Credential{Uid: uint32(*uid), Gid: uint32(*gid)}
		for _, g := range strings.Split(*groups, ",") {
			if n, err := strconv.ParseUint(g, 10, 32); err == nil {
				cred.Groups = append(cred.Groups, uint32(n))
			}
		}
		cmd.SysProcAttr.Credential = cred
	}
	if err := cmd.Start(); err != nil {
		return fail(err)
	}
	// At the rank's memory limit the kernel must kill the rank, never the
	// shim that reports it. Lowering the shim's own score needs
	// CAP_SYS_RESOURCE, which containers and VMs often withhold; raising
	// the rank's does not, and makes it (and all it forks) the first choice
	// in its cgroup, and on the node before any daemon. It runs none of the
	// user's code until the go below.
	if err := os.WriteFile(fmt.Sprintf("/proc/%d/oom_score_adj", cmd.Process.Pid), []byte("1000"), 0); err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return fail(fmt.Errorf("raising the rank's OOM score: %w", err))
	}
	readyW.Close()
	goR.Close()
	if _, err := readyR.Read(make([]byte, 1)); err == nil {
		for _, b := range binds {
			src := fmt.Sprintf("/proc/self/fd/%d", b.src.Fd())
			if err := unix.Mount(src, b.dst, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
				_ = cmd.Process.Kill()
				_ = cmd.Wait()
				return fail(fmt.Errorf("binding the job's %s: %w", b.dst, err))
			}
			b.src.Close()
		}
		_, _ = goW.Write([]byte("go\n"))
	}
	goW.Close()
	readyR.Close()
	// Signals are the agent's to send to the rank; the shim only waits.
	// (Caught, not ignored: an ignored signal would stay ignored in
	// anything the shim starts.)
	signal.Notify(make(chan os.Signal, 1), syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGPIPE,
		syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGQUIT, syscall.SIGCONT)
	code, sig := 0, 0
	err = cmd.Wait()
	var ee *osexec.ExitError
	switch {
	case errors.As(err, &ee):
		ws := ee.Sys().(syscall.WaitStatus)
		if ws.Signaled() {
			sig = int(ws.Signal())
		} else {
			code = ws.ExitStatus()
		}
	case err != nil:
		code = 127
	}
	exitPath := filepath.Join(fmt.Sprintf("/proc/self/fd/%d", exitDir.Fd()), filepath.Base(*exitFile))
	if err := writeExit(exitPath, code, sig); err != nil {
		return fail(err)
	}
	return 0
}

type bind struct {
	src *os.File // opened before anything is bound: it may be under /tmp
	dst string
}

func openBinds(tmp, shm string) ([]bind, error) {
	var binds []bind
	for _, b := range []struct{ src, dst string }{{tmp, "/tmp"}, {shm, "/dev/shm"}} {
		if b.src == "" {
			continue
		}
		if _, err := os.Stat(b.dst); errors.Is(err, os.ErrNotExist) {
			continue // a host without /dev/shm: nothing to hide
		}
		fd, err := unix.Open(b.src, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, fmt.Errorf("the job's private %s (%s): %w", b.dst, b.src, err)
		}
		binds = append(binds, bind{os.NewFile(uintptr(fd), b.src), b.dst})
	}
	return binds, nil
}

// writeExit records how a rank ended, atomically: a reader sees the whole
// line or no file.
func writeExit(path string, code, sig int) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(fmt.Sprintf("%d %d\n", code, sig)), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// readExit reads what writeExit wrote.
func readExit(path string) (code, sig int, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, 0, err
	}
	if _, err := fmt.Sscanf(string(b), "%d %d", &code, &sig); err != nil {
		return 0, 0, fmt.Errorf("exit file %s: malformed %q", filepath.Base(path), strings.TrimSpace(string(b)))
	}
	return code, sig, nil
}
