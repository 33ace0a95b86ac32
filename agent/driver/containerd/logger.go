package containerd

import (
	"flag"
	"fmt"
	"io"
	"os"
	osexec "os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/loomhpc/loom/agent/driver"
)

// LoggerMain is `loom containerd-logger`, the program containerd's shim
// starts next to each rank container (a "binary" log URI). The shim hands
// it the rank's stdout and stderr as fds 3 and 4 and waits until fd 5 is
// closed. It drops to the job's user before it opens the output files, so
// a rank's output goes only where its user could write, and it runs until
// the container's output ends, whatever happens to the agent.
func LoggerMain(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("loom containerd-logger", flag.ContinueOnError)
	fs.SetOutput(stderr)
	stdoutPath := fs.String("stdout", "", "file the rank's stdout is appended to")
	stderrPath := fs.String("stderr", "", "file for stderr; equal to -stdout to merge")
	uid := fs.Int("uid", -1, "user to write as")
	gid := fs.Int("gid", -1, "group to write as")
	groups := fs.String("groups", "", "supplementary groups, comma-separated")
	truncate := fs.String("truncate", "none", `files to empty first: "stdout", "stderr", both comma-separated, or "none"`)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	outPipe, errPipe, ready := os.NewFile(3, "stdout"), os.NewFile(4, "stderr"), os.NewFile(5, "ready")
	fail := func(err error) int {
		// The shim logs what its logger says; the rank's output is drained
		// so the rank is not blocked on a full pipe.
		fmt.Fprintf(stderr, "loom containerd-logger %s: %v\n", os.Getenv("CONTAINER_ID"), err)
		ready.Close()
		drain(outPipe, io.Discard, errPipe, io.Discard)
		return 1
	}
	if err := dropPrivileges(*uid, *gid, *groups); err != nil {
		return fail(err)
	}
	open := func(p, which string) (*os.File, error) {
		flags := os.O_WRONLY | os.O_CREATE | os.O_APPEND
		if slices.Contains(strings.Split(*truncate, ","), which) {
			flags |= os.O_TRUNC
		}
		return os.OpenFile(p, flags, 0o644)
	}
	out, err := open(*stdoutPath, "stdout")
	if err != nil {
		return fail(err)
	}
	errOut := out
	if *stderrPath != "" && *stderrPath != *stdoutPath {
		if errOut, err = open(*stderrPath, "stderr"); err != nil {
			return fail(err)
		}
	}
	ready.Close()
	// Merged output: both pipes write to one file; O_APPEND keeps each
	// write whole.
	drain(outPipe, out, errPipe, errOut)
	return 0
}

func drain(a io.Reader, aw io.Writer, b io.Reader, bw io.Writer) {
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _, _ = io.Copy(aw, a) }()
	go func() { defer wg.Done(); _, _ = io.Copy(bw, b) }()
	wg.Wait()
}

// dropPrivileges becomes uid:gid with groups, when running as root and
// asked to be someone else.
func dropPrivileges(uid, gid int, groups string) error {
	if uid < 0 || gid < 0 {
		return fmt.Errorf("-uid and -gid are required")
	}
	if os.Geteuid() != 0 || (uid == 0 && gid == 0) {
		return nil
	}
	var gids []int
	for _, g := range strings.Split(groups, ",") {
		if g == "" {
			continue
		}
		n, err := strconv.Atoi(g)
		if err != nil {
			return fmt.Errorf("-groups: %q is not a number", g)
		}
		gids = append(gids, n)
	}
	if len(gids) == 0 {
		gids = []int{gid}
	}
	if err := syscall.Setgroups(gids); err != nil {
		return fmt.Errorf("setgroups: %w", err)
	}
	if err := syscall.Setgid(gid); err != nil {
		return fmt.Errorf("setgid: %w", err)
	}
	if err := syscall.Setuid(uid); err != nil {
		return fmt.Errorf("setuid: %w", err)
	}
	return nil
}

// checkOutput opens (creating) the rank's output files as its user, the
// way the logger will, and says why it cannot.
func checkOutput(s driver.TaskSpec) error {
	cmd := osexec.Command("/bin/sh", "-c", `for f; do : >>"$f" || exit 1; done`, "loom-check-output", s.Stdout, s.Stderr)
	if uint32(os.Geteuid()) != s.UID || uint32(os.Getegid()) != s.GID {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: s.UID, Gid: s.GID, Groups: s.Groups}}
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("output file as uid %d: %s", s.UID, strings.TrimSpace(string(out)))
	}
	return nil
}
