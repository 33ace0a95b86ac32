package auth

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPeerCredentialsHandshake(t *testing.T) {
	lis, err := ListenLocal(filepath.Join(t.TempDir(), "s"))
	if err != nil {
		t.Fatalf("ListenLocal: %v", err)
	}
	defer lis.Close()
	type result struct {
		info PeerCredInfo
		err  error
	}
	served := make(chan result, 1)
	go func() {
		conn, err := lis.Accept()
		if err != nil {
			served <- result{err: err}
			return
		}
		defer conn.Close()
		_, info, err := PeerCredentials().ServerHandshake(conn)
		if err != nil {
			served <- result{err: err}
			return
		}
		served <- result{info: info.(PeerCredInfo)}
	}()
	conn, err := net.Dial("unix", lis.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, clientInfo, err := PeerCredentials().ClientHandshake(t.Context(), "localhost", conn)
	if err != nil {
		t.Fatalf("ClientHandshake: %v", err)
	}
	r := <-served
	if r.err != nil {
		t.Fatalf("ServerHandshake: %v", r.err)
	}
	want := PeerCredInfo{UID: uint32(os.Getuid()), GID: uint32(os.Getgid()), PID: int32(os.Getpid())}
	for side, got := range map[string]PeerCredInfo{"server": r.info, "client": clientInfo.(PeerCredInfo)} {
		if got.UID != want.UID || got.GID != want.GID || got.PID != want.PID {
			t.Errorf("%s side sees uid %d gid %d pid %d, want %d %d %d", side, got.UID, got.GID, got.PID, want.UID, want.GID, want.PID)
		}
		if got.AuthType() != AuthTypePeerCred {
			t.Errorf("%s side AuthType() = %q, want %q", side, got.AuthType(), AuthTypePeerCred)
		}
	}
}

func TestPeerCredentialsRefuseTCP(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		conn, _ := lis.Accept()
		accepted <- conn
	}()
	conn, err := net.Dial("tcp", lis.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	server := <-accepted
	if server == nil {
		t.Fatal("Accept failed")
	}
	defer server.Close()
	if _, _, err := PeerCredentials().ServerHandshake(server); err == nil || !strings.Contains(err.Error(), "Unix socket") {
		t.Errorf("ServerHandshake(TCP) error = %v, want one saying peer credentials need a Unix socket", err)
	}
	if _, _, err := PeerCredentials().ClientHandshake(t.Context(), "x", conn); err == nil {
		t.Error("ClientHandshake(TCP) succeeded, want an error")
	}
}

func TestListenLocal(t *testing.T) {
	dir := t.TempDir()

	stale := filepath.Join(dir, "stale.sock")
	old, err := net.Listen("unix", stale)
	if err != nil {
		t.Fatal(err)
	}
	// Leave the socket file behind, as a crashed server does.
	old.(*net.UnixListener).SetUnlinkOnClose(false)
	old.Close()
	lis, err := ListenLocal(stale)
	if err != nil {
		t.Fatalf("ListenLocal over a stale socket: %v", err)
	}
	defer lis.Close()
	fi, err := os.Stat(stale)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o666 {
		t.Errorf("local socket mode = %v, want 0666: the kernel tells who connects", perm)
	}

	if _, err := ListenLocal(stale); err == nil || !strings.Contains(err.Error(), "another server") {
		t.Errorf("ListenLocal over a live socket: error = %v, want one saying another server listens", err)
	}

	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ListenLocal(file); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Errorf("ListenLocal over a regular file: error = %v, want one saying it is not a socket", err)
	}
}
