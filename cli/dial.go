package cli

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/BurntSushi/toml"

	"github.com/loomhpc/loom/auth/callcred"
	"github.com/loomhpc/loom/auth/munge"
	"github.com/loomhpc/loom/pki"
	"github.com/loomhpc/loom/rpcclient"
)

// How the commands reach the servers and prove who runs them. A server
// address in LOOM_ADDR is either unix:///PATH, a server's local socket,
// where the kernel tells the server the caller's uid (peer credentials),
// or HOST:PORT, reached over TLS (the cluster's CA verifies the server)
// with a MUNGE credential made by this host's munged on every call.
// Settings come from the environment, else from the [cli] table of the
// configuration file ($LOOM_CONFIG or /etc/loom/loom.toml):
//
//	[cli]
//	servers = ["10.0.0.1:7070", "10.0.0.2:7070"]
//	tls_ca = "/etc/loom/tls/loom-ca.pem"
//	# tls_cert, tls_key: a cli certificate, where the site wants one
//	# munge_socket = "/run/munge/munge.socket.2"
//	# tls = false   # plaintext TCP, only on a cluster configured so
//
// With neither LOOM_ADDR nor servers set, a dev cluster that this user
// started (loom dev) is found at DevSocket; otherwise DefaultAddr.

// Environment variables for connecting.
const (
	// EnvCACert is the CA certificate that verifies the servers.
	EnvCACert = "LOOM_CACERT"
	// EnvClientCert and EnvClientKey are a cli certificate and key to
	// present, where the site gives users one.
	EnvClientCert = "LOOM_CLIENT_CERT"
	EnvClientKey  = "LOOM_CLIENT_KEY"
	// EnvTLS=false talks plaintext TCP, to a cluster whose configuration
	// says tls = false.
	EnvTLS = "LOOM_TLS"
	// EnvMungeSocket is munged's socket when it is not the default.
	EnvMungeSocket = "LOOM_MUNGE_SOCKET"
	// EnvConfig names the configuration file.
	EnvConfig = "LOOM_CONFIG"
)

// DefaultConfigPath is the configuration file read when $LOOM_CONFIG is
// unset, if it exists.
const DefaultConfigPath = "/etc/loom/loom.toml"

// DefaultCACert is the CA certificate used when nothing names one.
const DefaultCACert = "/etc/loom/tls/" + pki.CACertFile

// DevSocket is where loom dev, started by the user with uid, listens for
// that user's commands: a socket in a directory of the system's
// temporary directory that only that user may enter.
func DevSocket(uid int) string {
	return filepath.Join(os.TempDir(), fmt.Sprintf("loom-dev-%d", uid), "loom.sock")
}

// CheckDevSocketDir reports whether dir may hold a user's dev socket: a
// directory owned by uid that no one else may enter, so that no other
// user can put a socket there for the commands to talk to.
func CheckDevSocketDir(dir string, uid int) error {
	fi, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	switch {
	case !fi.IsDir():
		return fmt.Errorf("%s is not a directory", dir)
	case !ok || int(st.Uid) != uid:
		return fmt.Errorf("%s is not owned by uid %d", dir, uid)
	case fi.Mode().Perm()&0o077 != 0:
		return fmt.Errorf("%s may be entered by other users (mode %v, want 0700)", dir, fi.Mode().Perm())
	}
	return nil
}

// cliSettings is the [cli] table of the configuration file.
type cliSettings struct {
	Servers     []string `toml:"servers"`
	TLS         *bool    `toml:"tls"`
	TLSCA       string   `toml:"tls_ca"`
	TLSCert     string   `toml:"tls_cert"`
	TLSKey      string   `toml:"tls_key"`
	MungeSocket string   `toml:"munge_socket"`
}

// readSettings reads the [cli] table of the configuration file, if there
// is one.
func readSettings(e *env) (cliSettings, string, error) {
	path := e.getenv(EnvConfig)
	if path == "" {
		if _, err := os.Stat(DefaultConfigPath); err != nil {
			return cliSettings{}, "", nil
		}
		path = DefaultConfigPath
	}
	var doc struct {
		CLI cliSettings `toml:"cli"`
	}
	if _, err := toml.DecodeFile(path, &doc); err != nil {
		if errors.Is(err, fs.ErrPermission) {
			return cliSettings{}, "", nil // a daemon's file, not meant for users
		}
		return cliSettings{}, "", fmt.Errorf("%s: %w", path, err)
	}
	return doc.CLI, path, nil
}

// transport is how the commands of one process dial TCP servers.
type transport struct {
	tls   bool
	files pki.Files
	munge callcred.Encoder
}

// newTransport reads the settings for TCP servers.
func newTransport(e *env, set cliSettings, setPath string) (*transport, error) {
	tr := &transport{tls: true}
	if set.TLS != nil {
		tr.tls = *set.TLS
	}
	if v := e.getenv(EnvTLS); v != "" {
		on, err := strconv.ParseBool(v)
		if err != nil {
			return nil, fmt.Errorf("%s=%q: want true or false", EnvTLS, v)
		}
		tr.tls = on
	}
	tr.files = pki.Files{CA: firstSet(e.getenv(EnvCACert), set.TLSCA, DefaultCACert),
		Cert: firstSet(e.getenv(EnvClientCert), set.TLSCert), Key: firstSet(e.getenv(EnvClientKey), set.TLSKey)}
	if tr.tls {
		if _, err := os.Stat(tr.files.CA); err != nil {
			where := EnvCACert
			if setPath != "" {
				where += " or tls_ca in [cli] of " + setPath
			}
			return nil, fmt.Errorf("the cluster's CA certificate %s: %v: set %s (or %s=false for a cluster configured with tls = false)",
				tr.files.CA, errors.Unwrap(err), where, EnvTLS)
		}
	}
	if e.munge != nil {
		tr.munge = e.munge
	} else if sock := firstSet(e.getenv(EnvMungeSocket), set.MungeSocket); sock != "" {
		tr.munge = munge.Client{Socket: sock}
	}
	return tr, nil
}

func firstSet(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}

// isUnixAddr reports whether addr names a local socket.
func isUnixAddr(addr string) bool { return strings.HasPrefix(addr, "unix:") }

// dialOptions are the options for a connection to addr: nothing on a
// local socket, where the server reads the caller's uid from the kernel
// (peer credentials); otherwise TLS (or plaintext) with a MUNGE
// credential on every call.
func (tr *transport) dialOptions(addr string) (rpcclient.Options, error) {
	if isUnixAddr(addr) {
		return rpcclient.Options{}, nil
	}
	var opts rpcclient.Options
	if tr.tls {
		tc, err := pki.CLIClientConfig(tr.files)
		if err != nil {
			return rpcclient.Options{}, err
		}
		opts.TLS = tc
	}
	enc := tr.munge
	if enc == nil {
		enc = munge.Client{}
	}
	opts.Metadata = func(_ context.Context, method string) (map[string]string, error) {
		return callcred.Metadata(enc, method)
	}
	return opts, nil
}

// defaultAddrs are the servers to use when LOOM_ADDR is unset: those of
// the configuration file, else this user's dev cluster when it runs, else
// DefaultAddr.
func defaultAddrs(set cliSettings) []string {
	if len(set.Servers) > 0 {
		return set.Servers
	}
	sock := DevSocket(os.Getuid())
	if CheckDevSocketDir(filepath.Dir(sock), os.Getuid()) == nil {
		if _, err := os.Stat(sock); err == nil {
			return []string{"unix://" + sock}
		}
	}
	return []string{DefaultAddr}
}
