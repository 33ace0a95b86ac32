package cli

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/loomhpc/loom/auth/callcred"
	"github.com/loomhpc/loom/rpcclient"
)

// command is one user command: it parses args and returns the exit status.
type command func(ctx context.Context, e *env, args []string) int

var commands = map[string]command{
	"sbatch":   runSbatch,
	"squeue":   runSqueue,
	"scancel":  runScancel,
	"sinfo":    runSinfo,
	"sacct":    runSacct,
	"scontrol": runScontrol,
	"logs":     runLogs,
	"operator": runOperator,
	"srun":     runSrun,
	"salloc":   runSalloc,
	"node":     runNode,
	"report":   runReport,
}

// Commands returns the names Run accepts, sorted.
func Commands() []string {
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Run runs the user command name ("sbatch", "squeue", "scancel", "sinfo",
// "sacct", "scontrol", "logs") with args (not including the command name),
// and returns the exit status: 0 on success, 1 on any error, which is
// printed to stderr as "<name>: error: <message>".
func Run(ctx context.Context, name string, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	return run(ctx, osEnv(name, stdin, stdout, stderr), args)
}

func run(ctx context.Context, e *env, args []string) int {
	cmd, ok := commands[e.name]
	if !ok {
		fmt.Fprintf(e.stderr, "loom: unknown command %q (known: %s)\n", e.name, strings.Join(Commands(), ", "))
		return 1
	}
	return cmd(ctx, e, args)
}

// identity is the user running the command, for the filters that name
// it (squeue --me); the servers take the caller from the connection.
type identity struct {
	user string
	uid  uint32
	gid  uint32
}

// env is everything a command reads from or writes to its process, so
// that tests can run commands without touching the real one.
type env struct {
	name           string // command name, the prefix of messages
	stdin          io.Reader
	stdout, stderr io.Writer
	environ        []string // KEY=VALUE, as os.Environ
	getwd          func() (string, error)
	whoami         func() (identity, error)
	hostname       func() (string, error)
	now            func() time.Time
	loc            *time.Location // for printed timestamps
	newToken       func() string
	// munge makes MUNGE credentials; nil means the munged of this host.
	munge callcred.Encoder
	// dialOptions, when set, replaces how connections are made (tests).
	dialOptions func(addr string) (rpcclient.Options, error)
}

func osEnv(name string, stdin io.Reader, stdout, stderr io.Writer) *env {
	return &env{
		name:     name,
		stdin:    stdin,
		stdout:   stdout,
		stderr:   stderr,
		environ:  os.Environ(),
		getwd:    os.Getwd,
		whoami:   currentUser,
		hostname: os.Hostname,
		now:      time.Now,
		loc:      time.Local,
		newToken: randomToken,
	}
}

// lookupEnv returns the value of key in e.environ (the last one, should
// it appear twice) and whether it is set.
func (e *env) lookupEnv(key string) (string, bool) {
	v, found := "", false
	for _, kv := range e.environ {
		if k, val, ok := strings.Cut(kv, "="); ok && k == key {
			v, found = val, true
		}
	}
	return v, found
}

// getenv returns the value of key in e.environ, or "".
func (e *env) getenv(key string) string {
	v, _ := e.lookupEnv(key)
	return v
}

// errorf prints "<name>: error: <message>" and returns exit status 1.
func (e *env) errorf(format string, args ...any) int {
	fmt.Fprintf(e.stderr, "%s: error: %s\n", e.name, fmt.Sprintf(format, args...))
	return 1
}

// fail reports err as errorf does, adding the usage hint for usage errors.
func (e *env) fail(err error) int {
	e.errorf("%s", errorMessage(err))
	var ue *usageError
	var uo *unknownOptionError
	if errors.As(err, &ue) || errors.As(err, &uo) {
		fmt.Fprintf(e.stderr, "Try \"%s --help\" for more information\n", e.name)
	}
	return 1
}

// warnf prints "<name>: warning: <message>".
func (e *env) warnf(format string, args ...any) {
	fmt.Fprintf(e.stderr, "%s: warning: %s\n", e.name, fmt.Sprintf(format, args...))
}

func currentUser() (identity, error) {
	u, err := user.Current()
	if err != nil {
		return identity{}, fmt.Errorf("looking up the current user: %w", err)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return identity{}, fmt.Errorf("uid %q of user %s is not a number", u.Uid, u.Username)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return identity{}, fmt.Errorf("gid %q of user %s is not a number", u.Gid, u.Username)
	}
	return identity{user: u.Username, uid: uint32(uid), gid: uint32(gid)}, nil
}

// randomToken makes a submit idempotency token: 128 random bits.
func randomToken() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		// crypto/rand does not fail on supported platforms.
		panic(err)
	}
	return hex.EncodeToString(b[:])
}
