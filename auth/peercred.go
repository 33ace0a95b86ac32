package auth

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/credentials"
)

// AuthTypePeerCred is the AuthType of PeerCredInfo.
const AuthTypePeerCred = "peercred"

// PeerCredInfo is the credentials.AuthInfo of a connection made with
// PeerCredentials: the uid, gid and pid of the process at the other end of
// the Unix socket when it connected, as the kernel reports them.
type PeerCredInfo struct {
	credentials.CommonAuthInfo
	UID, GID uint32
	PID      int32
}

// AuthType returns AuthTypePeerCred.
func (PeerCredInfo) AuthType() string { return AuthTypePeerCred }

// PeerCredentials returns gRPC transport credentials for Unix-socket
// connections. The server side reads the client's uid, gid and pid with
// SO_PEERCRED and returns them as a PeerCredInfo, from which the server
// interceptors make an Identity with Method "local". The client side
// encrypts nothing and reads the server's credentials the same way, so
// a client can check who it talks to. Both sides refuse a connection that
// is not a Unix socket.
//
// A server uses it for its local listener only:
//
//	lis, err := auth.ListenLocal(path)
//	srv := grpc.NewServer(grpc.Creds(auth.PeerCredentials()), …)
//
// and a client dials "unix://"+path with
// grpc.WithTransportCredentials(auth.PeerCredentials()).
func PeerCredentials() credentials.TransportCredentials { return peerCredentials{} }

type peerCredentials struct{}

func (peerCredentials) ClientHandshake(_ context.Context, _ string, conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	info, err := readPeerCred(conn)
	if err != nil {
		return nil, nil, err
	}
	return conn, info, nil
}

func (peerCredentials) ServerHandshake(conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	info, err := readPeerCred(conn)
	if err != nil {
		return nil, nil, err
	}
	return conn, info, nil
}

func (peerCredentials) Info() credentials.ProtocolInfo {
	return credentials.ProtocolInfo{SecurityProtocol: AuthTypePeerCred}
}

func (peerCredentials) Clone() credentials.TransportCredentials { return peerCredentials{} }

// OverrideServerName does nothing: there is no server name to check on a
// Unix socket.
func (peerCredentials) OverrideServerName(string) error { return nil }

// readPeerCred returns the credentials of the process at the other end of
// conn, which must be a Unix socket.
func readPeerCred(conn net.Conn) (PeerCredInfo, error) {
	if conn.LocalAddr().Network() != "unix" {
		return PeerCredInfo{}, fmt.Errorf("auth: peer credentials need a Unix socket, not a %s connection from %v", conn.LocalAddr().Network(), conn.RemoteAddr())
	}
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return PeerCredInfo{}, fmt.Errorf("auth: peer credentials: connection %T has no file descriptor", conn)
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return PeerCredInfo{}, fmt.Errorf("auth: peer credentials: %w", err)
	}
	var cred *unix.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return PeerCredInfo{}, fmt.Errorf("auth: peer credentials: %w", err)
	}
	if credErr != nil {
		return PeerCredInfo{}, fmt.Errorf("auth: peer credentials: SO_PEERCRED: %w", credErr)
	}
	return PeerCredInfo{
		// The kernel carries the bytes between two processes of this
		// host; nobody else can read or change them.
		CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.PrivacyAndIntegrity},
		UID:            cred.Uid,
		GID:            cred.Gid,
		PID:            cred.Pid,
	}, nil
}

// ListenLocal listens on the Unix socket path for PeerCredentials. It
// replaces a stale socket file that nothing listens on, refuses to take
// over one that a live server holds, and makes the socket connectable by
// every local user: each is identified by the kernel, so letting them
// connect lets them act only as themselves.
func ListenLocal(path string) (net.Listener, error) {
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("auth: local socket %s: exists and is not a socket", path)
		}
		if c, err := net.Dial("unix", path); err == nil {
			c.Close()
			return nil, fmt.Errorf("auth: local socket %s: another server is listening on it", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("auth: local socket %s: remove stale socket: %w", path, err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("auth: local socket %s: %w", path, err)
	}
	lis, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("auth: local socket %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o666); err != nil {
		lis.Close()
		return nil, fmt.Errorf("auth: local socket %s: %w", path, err)
	}
	return lis, nil
}

// LocalOr returns transport credentials that use PeerCredentials on Unix
// sockets and other (server TLS, or insecure credentials for a cluster
// with tls = false) on every other connection, so that one grpc.Server
// can serve a TCP listener and a local socket.
func LocalOr(other credentials.TransportCredentials) credentials.TransportCredentials {
	return localOr{other: other}
}

type localOr struct {
	other credentials.TransportCredentials
}

func (c localOr) ClientHandshake(ctx context.Context, authority string, conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	if conn.LocalAddr().Network() == "unix" {
		return peerCredentials{}.ClientHandshake(ctx, authority, conn)
	}
	return c.other.ClientHandshake(ctx, authority, conn)
}

func (c localOr) ServerHandshake(conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	if conn.LocalAddr().Network() == "unix" {
		return peerCredentials{}.ServerHandshake(conn)
	}
	return c.other.ServerHandshake(conn)
}

func (c localOr) Info() credentials.ProtocolInfo { return c.other.Info() }

func (c localOr) Clone() credentials.TransportCredentials {
	return localOr{other: c.other.Clone()}
}

func (c localOr) OverrideServerName(name string) error {
	//lint:ignore SA1019 part of the interface that other implements.
	return c.other.OverrideServerName(name)
}
