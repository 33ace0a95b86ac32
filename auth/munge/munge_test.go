package munge

import (
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// encodeAsEnv names the socket a re-executed test binary encodes a
// credential with, printing it on stdout instead of running tests.
const encodeAsEnv = "LOOM_MUNGE_TEST_ENCODE_SOCKET"

// noLibraryEnv tells a re-executed test binary, started where libmunge
// cannot load, to check that Encode and Decode say so and exit 0.
const noLibraryEnv = "LOOM_MUNGE_TEST_NO_LIBRARY"

func TestMain(m *testing.M) {
	if socket := os.Getenv(encodeAsEnv); socket != "" {
		cred, err := Client{Socket: socket}.Encode([]byte("from child"))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Print(cred)
		os.Exit(0)
	}
	if os.Getenv(noLibraryEnv) == "1" {
		_, encErr := Encode(nil)
		_, decErr := Decode("MUNGE:x:")
		if !errors.Is(encErr, ErrNoLibrary) || !errors.Is(decErr, ErrNoLibrary) {
			fmt.Fprintf(os.Stderr, "Encode error = %v, Decode error = %v; want ErrNoLibrary\n", encErr, decErr)
			os.Exit(1)
		}
		fmt.Print(encErr)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestRoundTrip(t *testing.T) {
	c := StartTestDaemon(t).Client()
	for _, payload := range [][]byte{[]byte("/loom.v1.JobService/Submit"), nil} {
		cred, err := c.Encode(payload)
		if err != nil {
			t.Fatalf("Encode(%q): %v", payload, err)
		}
		got, err := c.Decode(cred)
		if err != nil {
			t.Fatalf("Decode(Encode(%q)): %v", payload, err)
		}
		if got.UID != uint32(os.Getuid()) || got.GID != uint32(os.Getgid()) {
			t.Errorf("Decode(Encode(%q)) uid/gid = %d/%d, want %d/%d", payload, got.UID, got.GID, os.Getuid(), os.Getgid())
		}
		if !bytes.Equal(got.Payload, payload) {
			t.Errorf("Decode(Encode(%q)) payload = %q", payload, got.Payload)
		}
		if got.TTL <= 0 || got.Decoded.Before(got.Encoded) {
			t.Errorf("Decode(Encode(%q)) TTL %v encoded %v decoded %v: want a positive TTL, decoded not before encoded", payload, got.TTL, got.Encoded, got.Decoded)
		}
	}
}

func TestReplayedRefused(t *testing.T) {
	c := StartTestDaemon(t).Client()
	cred, err := c.Encode([]byte("once"))
	if err != nil {
		t.Fatalf("Encode: %v", err)
	}
	if _, err := c.Decode(cred); err != nil {
		t.Fatalf("first Decode: %v", err)
	}
	got, err := c.Decode(cred)
	if !errors.Is(err, ErrReplayed) {
		t.Fatalf("second Decode error = %v, want ErrReplayed", err)
	}
	var merr *Error
	if !errors.As(err, &merr) || merr.Op != "decode" || merr.Code != codeReplayed {
		t.Errorf("second Decode error = %#v, want *Error{Op: decode, Code: %d}", err, codeReplayed)
	}
	if got.UID != 0 || got.Payload != nil {
		t.Errorf("second Decode returned %+v with its error, want the zero Credential", got)
	}
}

func TestExpiredRefused(t *testing.T) {
	d := StartTestDaemon(t)
	short := Client{Socket: d.Socket, TTL: time.Second}
	cred, err := short.Encode([]byte("brief"))
	if err != nil {
		t.Fatalf("Encode with TTL 1s: %v", err)
	}
	// munged refuses a credential once its clock is past encode time +
	// TTL. A probe made after cred gives a bound on cred's encode time;
	// later probes show munged's clock.
	probe := func() Credential {
		t.Helper()
		p, err := d.Client().Encode(nil)
		if err != nil {
			t.Fatalf("probe Encode: %v", err)
		}
		got, err := d.Client().Decode(p)
		if err != nil {
			t.Fatalf("probe Decode: %v", err)
		}
		return got
	}
	expiry := probe().Encoded.Add(short.TTL)
	deadline := time.Now().Add(30 * time.Second)
	for !probe().Decoded.After(expiry) {
		if time.Now().After(deadline) {
			t.Fatalf("munged's clock did not pass %v within 30s", expiry)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := short.Decode(cred); !errors.Is(err, ErrExpired) {
		t.Fatalf("Decode after expiry error = %v, want ErrExpired", err)
	}
}

func TestOtherKeyInvalid(t *testing.T) {
	a, b := StartTestDaemon(t).Client(), StartTestDaemon(t).Client()
	cred, err := a.Encode([]byte("for a"))
	if err != nil {
		t.Fatalf("Encode: %v", err)
	}
	for _, tc := range []struct{ name, cred string }{
		{"another key", cred},
		{"garbage", "MUNGE:bm90IGEgY3JlZGVudGlhbA==:"},
		{"empty", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := b.Decode(tc.cred); !errors.Is(err, ErrInvalid) {
				t.Errorf("Decode(%q) error = %v, want ErrInvalid", tc.cred, err)
			}
		})
	}
}

func TestDaemonUnreachable(t *testing.T) {
	if err := Load(); err != nil {
		skipOrFail(t, err.Error())
	}
	socket := filepath.Join(t.TempDir(), "no-munged.socket")
	c := Client{Socket: socket}
	_, err := c.Encode(nil)
	if !errors.Is(err, ErrDaemon) {
		t.Fatalf("Encode with no munged: error = %v, want ErrDaemon", err)
	}
	if !strings.Contains(err.Error(), socket) {
		t.Errorf("Encode with no munged: error %q does not name socket %s", err, socket)
	}
	if _, err := c.Decode("MUNGE:x:"); !errors.Is(err, ErrDaemon) {
		t.Errorf("Decode with no munged: error = %v, want ErrDaemon", err)
	}
}

func TestNoLibrary(t *testing.T) {
	_, err := openLibrary("libmunge-absent.so.2")
	if !errors.Is(err, ErrNoLibrary) {
		t.Fatalf("openLibrary(absent) error = %v, want ErrNoLibrary", err)
	}
	if !strings.Contains(err.Error(), "install munge or set auth=local") {
		t.Errorf("openLibrary(absent) error = %q, want it to say what to do", err)
	}
}

// TestNotLinked checks that libmunge is loaded at run time, not linked: a
// binary that needs libmunge.so.2 to start would not run where munge is
// absent.
func TestNotLinked(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	f, err := elf.Open(exe)
	if err != nil {
		t.Fatalf("elf.Open(%s): %v", exe, err)
	}
	defer f.Close()
	libs, err := f.ImportedLibraries()
	if err != nil {
		t.Fatalf("ImportedLibraries(%s): %v", exe, err)
	}
	for _, lib := range libs {
		if strings.HasPrefix(lib, "libmunge") {
			t.Errorf("test binary needs %s at start; libmunge must be loaded with dlopen", lib)
		}
	}
}

// TestRunsWithoutLibrary runs this test binary where libmunge.so.2 cannot
// be loaded (a mount namespace with /dev/null over it): it must start, and
// Encode and Decode must return ErrNoLibrary.
func TestRunsWithoutLibrary(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root to mount over libmunge in a private mount namespace")
	}
	if err := Load(); err != nil {
		skipOrFail(t, err.Error())
	}
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		t.Skip("needs unshare (util-linux)")
	}
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		t.Fatal(err)
	}
	var lib string
	for line := range strings.Lines(string(maps)) {
		if f := strings.Fields(line); len(f) == 6 && strings.Contains(f[5], LibraryName) {
			lib = f[5]
			break
		}
	}
	if lib == "" {
		t.Fatalf("%s is loaded but not in /proc/self/maps", LibraryName)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(unshare, "--mount", "--propagation", "private", "sh", "-c",
		`mount --bind /dev/null "$1" && exec "$2" -test.run='^$'`, "sh", lib, exe)
	cmd.Env = append(os.Environ(), noLibraryEnv+"=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("test binary with %s masked: %v: %s", lib, err, out)
	}
	if !strings.Contains(string(out), "install munge or set auth=local") {
		t.Errorf("test binary with %s masked said %q, want the ErrNoLibrary message", lib, out)
	}
}

// TestOtherUserDecodes checks that a credential names the user who made
// it, not the one who decodes it: a process running as nobody encodes,
// root decodes.
func TestOtherUserDecodes(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root to run a process as nobody")
	}
	d := StartTestDaemon(t)
	const nobody = 65534
	cmd := exec.Command("/proc/self/exe", "-test.run=^$")
	cmd.Env = append(os.Environ(), encodeAsEnv+"="+d.Socket)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cred, err := cmd.Output()
	if err != nil {
		t.Fatalf("encode as nobody: %v: %s", err, stderr.String())
	}
	got, err := d.Client().Decode(string(cred))
	if err != nil {
		t.Fatalf("Decode(credential of nobody): %v", err)
	}
	if got.UID != nobody || got.GID != nobody || string(got.Payload) != "from child" {
		t.Errorf("Decode(credential of nobody) = uid %d gid %d payload %q, want %d %d %q", got.UID, got.GID, got.Payload, nobody, nobody, "from child")
	}
}

func TestErrorSentinels(t *testing.T) {
	for _, tc := range []struct {
		op   string
		code int
		want error
	}{
		{"encode", codeSocket, ErrDaemon},
		{"decode", codeBadArg, ErrInvalid},
		{"encode", codeBadArg, nil},
		{"decode", codeReplayed, ErrReplayed},
		{"decode", codeExpired, ErrExpired},
		{"decode", codeRewound, ErrRewound},
		{"decode", codeInvalid, ErrInvalid},
		{"decode", codeBadCred, ErrInvalid},
		{"decode", codeBadRealm, ErrInvalid},
		{"decode", codeUnauthorized, ErrInvalid},
		{"decode", codeNoMemory, nil},
	} {
		e := &Error{Op: tc.op, Socket: DefaultSocket, Code: tc.code, Message: "m"}
		if got := e.Unwrap(); got != tc.want {
			t.Errorf("(&Error{Op: %q, Code: %d}).Unwrap() = %v, want %v", tc.op, tc.code, got, tc.want)
		}
	}
}

func TestTTLSeconds(t *testing.T) {
	for _, tc := range []struct {
		ttl  time.Duration
		want int
		ok   bool
	}{
		{0, 0, true},
		{time.Second, 1, true},
		{1500 * time.Millisecond, 2, true},
		{time.Hour, 3600, true},
		{-time.Second, 0, false},
	} {
		got, err := Client{TTL: tc.ttl}.ttlSeconds()
		if got != tc.want || (err == nil) != tc.ok {
			t.Errorf("Client{TTL: %v}.ttlSeconds() = %d, %v; want %d, ok %v", tc.ttl, got, err, tc.want, tc.ok)
		}
	}
}
