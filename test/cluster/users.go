package cluster

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/user"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/loomhpc/loom/api/apirpc"
	"github.com/loomhpc/loom/auth"
	"github.com/loomhpc/loom/internal/harness"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
)

// The unprivileged users the end-to-end tests act as. .ci/run creates
// them (useradd -m); a test that needs them skips where they are missing,
// or fails when LOOM_E2E_REQUIRE=1.
const (
	UserA = "loomalice"
	UserB = "loombob"
)

// RequireEnv set to 1 turns the skips of tests that cannot run here (not
// root, no test users, no munged) into failures, so that CI cannot pass
// them unnoticed.
const RequireEnv = "LOOM_E2E_REQUIRE"

// SkipOrFail skips t with why, or fails it when RequireEnv=1.
func SkipOrFail(t testing.TB, why string) {
	t.Helper()
	harness.Require(t, why, false)
}

// RequireRoot skips (or fails) t unless it runs as root, which the tests
// of users and their files need.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		SkipOrFail(t, "needs root: it acts as several users")
	}
}

// LookupUser returns the account called name on this host, skipping (or
// failing) t when there is none.
func LookupUser(t testing.TB, name string) auth.User {
	t.Helper()
	RequireRoot(t)
	pw, err := user.Lookup(name)
	if err != nil {
		SkipOrFail(t, fmt.Sprintf("user %s: %v: create it with useradd -m %s (.ci/run does)", name, err, name))
	}
	uid, err := strconv.ParseUint(pw.Uid, 10, 32)
	if err != nil {
		t.Fatalf("user %s: uid %q: %v", name, pw.Uid, err)
	}
	u, err := auth.LookupUser(uint32(uid))
	if err != nil {
		t.Fatalf("user %s: %v", name, err)
	}
	return u
}

// ClientAs is Client for a connection made as user u: the test, running
// as root, connects to the server's local socket under u's uid and gid,
// so that the server's peer credentials name u. addr is the socket
// (Server.Client()).
func ClientAs(t testing.TB, addr string, u auth.User) (apirpc.JobServiceClient, apirpc.NodeServiceClient) {
	t.Helper()
	conn := ConnAs(t, addr, u)
	return apirpc.NewJobServiceClient(conn), apirpc.NewNodeServiceClient(conn)
}

// ConnAs returns the connection of ClientAs.
func ConnAs(t testing.TB, addr string, u auth.User) *grpc.ClientConn {
	t.Helper()
	path, ok := strings.CutPrefix(addr, "unix://")
	if !ok {
		t.Fatalf("ConnAs(%q): want a local socket, unix://PATH", addr)
	}
	conn, err := grpc.NewClient("passthrough:///"+path,
		grpc.WithTransportCredentials(auth.PeerCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			return dialUnixAs(ctx, path, u.UID, u.GID)
		}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// dialUnixAs connects to the Unix socket path with the effective uid and
// gid of a user: on one locked OS thread it changes that thread's
// credentials alone (raw setresuid/setresgid, which Go's syscall package
// would apply to every thread), connects, and changes them back. The
// kernel records the connecting thread's credentials for SO_PEERCRED.
func dialUnixAs(ctx context.Context, path string, uid, gid uint32) (net.Conn, error) {
	runtime.LockOSThread()
	restored := false
	defer func() {
		// A thread whose credentials could not be restored must not run
		// other goroutines: leaving it locked makes the runtime end it
		// with this goroutine.
		if restored {
			runtime.UnlockOSThread()
		}
	}()
	const unchanged = ^uintptr(0) // -1: leave the real and saved ids alone
	euid, egid := uintptr(os.Geteuid()), uintptr(os.Getegid())
	if _, _, e := unix.RawSyscall(unix.SYS_SETRESGID, unchanged, uintptr(gid), unchanged); e != 0 {
		restored = true // nothing changed
		return nil, fmt.Errorf("setresgid %d: %w", gid, e)
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SETRESUID, unchanged, uintptr(uid), unchanged); e != 0 {
		_, _, e2 := unix.RawSyscall(unix.SYS_SETRESGID, unchanged, egid, unchanged)
		restored = e2 == 0
		return nil, fmt.Errorf("setresuid %d: %w", uid, e)
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", path)
	_, _, e1 := unix.RawSyscall(unix.SYS_SETRESUID, unchanged, euid, unchanged)
	_, _, e2 := unix.RawSyscall(unix.SYS_SETRESGID, unchanged, egid, unchanged)
	restored = e1 == 0 && e2 == 0
	return conn, err
}
