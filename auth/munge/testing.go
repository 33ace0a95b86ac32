package munge

import (
	"crypto/rand"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// RequireEnv is the environment variable that turns a skipped test for want
// of munge into a failure: CI machines with munge installed set
// LOOM_E2E_REQUIRE=1 so a broken install cannot pass unnoticed.
const RequireEnv = "LOOM_E2E_REQUIRE"

// TestDaemon is a munged private to one test: its own key, socket and
// replay cache in a temporary directory, stopped when the test ends.
type TestDaemon struct {
	// Socket is the daemon's socket, for Client.Socket.
	Socket string
	// Dir holds the key, socket, log and seed files. Other users can
	// reach it, so that tests can make credentials as them.
	Dir string
}

// Client returns a Client of d.
func (d *TestDaemon) Client() Client { return Client{Socket: d.Socket} }

// StartTestDaemon starts a munged for t. It skips t when munged or
// libmunge.so.2 is absent, unless LOOM_E2E_REQUIRE=1, which makes that a
// failure.
func StartTestDaemon(t testing.TB) *TestDaemon {
	t.Helper()
	munged := findMunged()
	if munged == "" {
		skipOrFail(t, "munged not found: install the Debian package munge")
	}
	if err := Load(); err != nil {
		skipOrFail(t, err.Error())
	}
	dir, err := os.MkdirTemp("", "loom-munged-")
	if err != nil {
		t.Fatalf("munged test directory: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	// munged checks that its files are not writable by others; 0755 lets
	// test processes running as other users reach the socket.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatalf("munged test directory: %v", err)
	}
	d := &TestDaemon{Socket: filepath.Join(dir, "munge.socket"), Dir: dir}
	key := make([]byte, 1024)
	if _, err := rand.Read(key); err != nil {
		t.Fatalf("munged key: %v", err)
	}
	keyFile := filepath.Join(dir, "munge.key")
	if err := os.WriteFile(keyFile, key, 0o600); err != nil {
		t.Fatalf("munged key: %v", err)
	}
	// munged's own messages go to a file: read while it runs, a buffer
	// filled by exec's copying goroutine would race.
	outFile := filepath.Join(dir, "munged.out")
	out, err := os.Create(outFile)
	if err != nil {
		t.Fatalf("munged output: %v", err)
	}
	defer out.Close()
	output := func() string {
		b, _ := os.ReadFile(outFile)
		return string(b)
	}
	cmd := exec.Command(munged, "--foreground",
		"--key-file="+keyFile,
		"--socket="+d.Socket,
		"--pid-file="+filepath.Join(dir, "munged.pid"),
		"--log-file="+filepath.Join(dir, "munged.log"),
		"--seed-file="+filepath.Join(dir, "munged.seed"))
	cmd.Stdout = out
	cmd.Stderr = out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", munged, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		conn, err := net.Dial("unix", d.Socket)
		if err == nil {
			conn.Close()
			return d
		}
		select {
		case err := <-exited:
			exited <- err // for the cleanup
			t.Fatalf("munged exited before listening (%v):\n%s", err, output())
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("munged did not listen on %s within 20s:\n%s", d.Socket, output())
		}
	}
}

// findMunged returns munged's path, or "" when it is not installed. It
// looks in /usr/sbin as well as PATH, which often lacks sbin for users
// other than root.
func findMunged() string {
	if p, err := exec.LookPath("munged"); err == nil {
		return p
	}
	for _, p := range []string{"/usr/sbin/munged", "/usr/local/sbin/munged"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return ""
}

// skipOrFail skips t for want of munge, or fails it when RequireEnv is 1.
func skipOrFail(t testing.TB, why string) {
	t.Helper()
	if os.Getenv(RequireEnv) == "1" {
		t.Fatalf("%s (and %s=1 requires munge tests to run)", why, RequireEnv)
	}
	t.Skipf("%s; set %s=1 to make this a failure", why, RequireEnv)
}
