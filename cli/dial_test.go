package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestTransportSettings(t *testing.T) {
	dir := t.TempDir()
	e := newTestEnv("squeue", "127.0.0.1:1", EnvCACert+"="+filepath.Join(dir, "missing.pem"))
	if _, err := newTransport(e.env, cliSettings{}, ""); err == nil || !strings.Contains(err.Error(), EnvCACert) || !strings.Contains(err.Error(), EnvTLS+"=false") {
		t.Errorf("newTransport with a missing CA: err = %v, want it to name %s and %s=false", err, EnvCACert, EnvTLS)
	}
	e = newTestEnv("squeue", "127.0.0.1:1", EnvTLS+"=maybe")
	if _, err := newTransport(e.env, cliSettings{}, ""); err == nil || !strings.Contains(err.Error(), EnvTLS) {
		t.Errorf("newTransport with %s=maybe: err = %v, want it to name %s", EnvTLS, err, EnvTLS)
	}
	off := false
	e = newTestEnv("squeue", "127.0.0.1:1")
	tr, err := newTransport(e.env, cliSettings{TLS: &off}, "/etc/loom/loom.toml")
	if err != nil || tr.tls {
		t.Errorf("newTransport with tls = false in [cli]: %+v, %v; want plaintext", tr, err)
	}
	// A local socket needs neither a CA nor munge.
	if opts, err := (&transport{tls: true}).dialOptions("unix:///run/loom/loom.sock"); err != nil || opts.TLS != nil || opts.Metadata != nil {
		t.Errorf("dialOptions(unix socket) = %+v, %v; want no TLS and no credential (peer credentials)", opts, err)
	}
}

func TestDevSocketDirMustBeTheUsers(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "loom-dev")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := CheckDevSocketDir(dir, os.Getuid()); err == nil {
		t.Error("CheckDevSocketDir(a directory others may enter) = nil, want an error")
	}
	os.Chmod(dir, 0o700)
	if err := CheckDevSocketDir(dir, os.Getuid()); err != nil {
		t.Errorf("CheckDevSocketDir(the user's own 0700 directory) = %v, want nil", err)
	}
	if err := CheckDevSocketDir(dir, os.Getuid()+1); err == nil {
		t.Error("CheckDevSocketDir(someone else's directory) = nil, want an error")
	}
	if got := defaultAddrs(cliSettings{Servers: []string{"ctl1:7070"}}); len(got) != 1 || got[0] != "ctl1:7070" {
		t.Errorf("defaultAddrs with servers in [cli] = %v, want [ctl1:7070]", got)
	}
}
