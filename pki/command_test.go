package pki

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func runCommand(args ...string) (rc int, stdout, stderr string) {
	var out, errb bytes.Buffer
	rc = Command(args, &out, &errb)
	return rc, out.String(), errb.String()
}

func TestCommandCreates(t *testing.T) {
	dir := t.TempDir()
	caDir, certDir := filepath.Join(dir, "ca"), filepath.Join(dir, "certs")
	steps := []struct {
		args     []string
		wantOut  []string
		wantFile string
	}{
		{[]string{"ca", "create", "--dir", caDir, "--days", "100"},
			[]string{"wrote " + filepath.Join(caDir, "loom-ca.pem"), "wrote " + filepath.Join(caDir, "loom-ca-key.pem")},
			filepath.Join(caDir, "loom-ca-key.pem")},
		{[]string{"cert", "create", "--server", "s1", "--ca-dir", caDir, "--dir", certDir, "--dns", "s1.example.org,s1", "--ip", "10.0.0.1", "--ip", "::1"},
			[]string{"loom-server-s1.pem: the certificate of server s1 (server.loom, s1.server.loom, localhost, s1.example.org, s1, 127.0.0.1, 10.0.0.1, ::1)", "loom-server-s1-key.pem: its key", "(when the CA expires)"},
			filepath.Join(certDir, "loom-server-s1-key.pem")},
		{[]string{"cert", "create", "--agent", "node7", "--ca-dir", caDir, "--dir", certDir, "--days", "30"},
			[]string{"loom-agent-node7.pem: the certificate of agent node7 (node7.agent.loom)"},
			filepath.Join(certDir, "loom-agent-node7-key.pem")},
		{[]string{"cert", "create", "--cli", "--ca-dir", caDir, "--dir", certDir},
			[]string{"loom-cli.pem: the certificate of cli (cli.loom)"},
			filepath.Join(certDir, "loom-cli-key.pem")},
		{[]string{"cert", "create", "--server", "s2", "--no-localhost", "--ca-dir", caDir, "--dir", certDir},
			[]string{"the certificate of server s2 (server.loom, s2.server.loom)"},
			filepath.Join(certDir, "loom-server-s2-key.pem")},
	}
	for _, st := range steps {
		rc, out, errs := runCommand(st.args...)
		if rc != 0 {
			t.Fatalf("loom tls %q = %d, stderr %q", st.args, rc, errs)
		}
		for _, want := range st.wantOut {
			if !strings.Contains(out, want) {
				t.Errorf("loom tls %q printed %q, want it to contain %q", st.args, out, want)
			}
		}
		if got := mode(t, st.wantFile); got != 0o600 {
			t.Errorf("loom tls %q: %s mode %v, want 0600", st.args, st.wantFile, got)
		}
	}
	id, err := Files{CA: filepath.Join(caDir, CACertFile), Cert: filepath.Join(certDir, "loom-agent-node7.pem"), Key: filepath.Join(certDir, "loom-agent-node7-key.pem")}.Identity()
	if err != nil || id != (Identity{RoleAgent, "node7"}) {
		t.Errorf("the agent files' identity = %v, %v; want agent node7", id, err)
	}

	// Again without --force: refused, files untouched; with it: replaced.
	key := filepath.Join(caDir, CAKeyFile)
	before, _ := os.ReadFile(key)
	rc, _, errs := runCommand("ca", "create", "--dir", caDir)
	if after, _ := os.ReadFile(key); rc != 1 || !strings.Contains(errs, "use --force") || !bytes.Equal(before, after) {
		t.Errorf("ca create over a CA = %d, %q (key unchanged %v); want 1 and a hint to use --force", rc, errs, bytes.Equal(before, after))
	}
	if rc, _, errs := runCommand("cert", "create", "--agent", "node7", "--ca-dir", caDir, "--dir", certDir); rc != 1 || !strings.Contains(errs, "loom-agent-node7.pem") {
		t.Errorf("cert create over a cert = %d, %q; want 1 naming the file", rc, errs)
	}
	if rc, _, errs := runCommand("cert", "create", "--agent", "node7", "--ca-dir", caDir, "--dir", certDir, "--force"); rc != 0 {
		t.Errorf("cert create --force = %d, %q; want 0", rc, errs)
	}
}

func TestCommandErrors(t *testing.T) {
	caDir := t.TempDir()
	if rc, _, errs := runCommand("ca", "create", "--dir", caDir); rc != 0 {
		t.Fatalf("ca create: %s", errs)
	}
	tests := []struct {
		args    []string
		wantRC  int
		wantErr string
	}{
		{nil, 2, "Usage:"},
		{[]string{"key", "create"}, 2, `unknown command "key create"`},
		{[]string{"ca"}, 2, `unknown command "ca"`},
		{[]string{"ca", "delete"}, 2, `unknown command "ca delete"`},
		{[]string{"ca", "create", "--days", "x"}, 2, "-days"},
		{[]string{"ca", "create", "--days", "0"}, 2, "--days 0"},
		{[]string{"ca", "create", "--bogus"}, 2, "-bogus"},
		{[]string{"ca", "create", "extra"}, 2, `unexpected argument "extra"`},
		{[]string{"cert", "create", "--ca-dir", caDir}, 2, "--server NAME, --agent NODE or --cli"},
		{[]string{"cert", "create", "--server", "s1", "--agent", "n1", "--ca-dir", caDir}, 2, "use one of --server, --agent and --cli"},
		{[]string{"cert", "create", "--server", "", "--ca-dir", caDir}, 2, `--server "": empty`},
		{[]string{"cert", "create", "--agent", "node_7", "--ca-dir", caDir}, 2, `--agent "node_7"`},
		{[]string{"cert", "create", "--agent", "n1", "--dns", "n2.agent.loom", "--ca-dir", caDir}, 2, "--dns"},
		{[]string{"cert", "create", "--agent", "n1", "--dns", "a,,b", "--ca-dir", caDir}, 2, "-dns"},
		{[]string{"cert", "create", "--agent", "n1", "--ip", "10.0.0.300", "--ca-dir", caDir}, 2, `--ip: "10.0.0.300"`},
		{[]string{"cert", "create", "--agent", "n1", "--days", "-1", "--ca-dir", caDir}, 2, "--days -1"},
		{[]string{"cert", "create", "--agent", "n1", "--no-localhost", "--ca-dir", caDir}, 2, "--no-localhost"},
		{[]string{"cert", "create", "--cli", "--ca-dir", t.TempDir()}, 1, "--ca-dir"},
		{[]string{"cert", "create", "--days"}, 2, "-days"},
	}
	for _, tt := range tests {
		rc, _, errs := runCommand(tt.args...)
		if rc != tt.wantRC || !strings.Contains(errs, tt.wantErr) {
			t.Errorf("loom tls %q = %d, %q; want %d and an error containing %q", tt.args, rc, errs, tt.wantRC, tt.wantErr)
		}
	}
}

func TestCommandHelp(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--help"}, "loom tls ca create"},
		{[]string{"help"}, "loom tls cert create"},
		{[]string{"ca", "create", "--help"}, "--days N    validity in days (default 1825)"},
		{[]string{"cert", "create", "-h"}, "--agent NODE"},
	}
	for _, tt := range tests {
		rc, out, errs := runCommand(tt.args...)
		if rc != 0 || errs != "" || !strings.Contains(out, tt.want) {
			t.Errorf("loom tls %q = %d, stdout %q, stderr %q; want 0 and help containing %q", tt.args, rc, out, errs, tt.want)
		}
	}
}
