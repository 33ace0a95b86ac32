package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Daemons refuse to start insecurely unless the configuration says so
// explicitly: no gossip key, a key on the command line or in a file
// others can read, no certificates.
func TestDaemonsRefuseInsecureStarts(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "gossip.key")
	if err := os.WriteFile(key, []byte("dGVzdC1rZXktMDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY=\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	server := []string{"server", "--data-dir", filepath.Join(dir, "s"), "--rpc-addr", "127.0.0.1:0",
		"--raft-addr", "127.0.0.1:0", "--metrics-addr", "-", "--local-socket", filepath.Join(dir, "s.sock"), "--auth", "local"}
	agent := []string{"agent", "--data-dir", filepath.Join(dir, "a"), "--servers", "127.0.0.1:1", "--listen-addr", "127.0.0.1:0",
		"--metrics-addr", "-", "--nvml=false", "--gpus", "1"}
	for _, tt := range []struct {
		name string
		args []string
		want string
	}{
		{"server without certificates", server, "--tls-ca, --tls-cert and --tls-key"},
		{"agent without certificates", agent, "--tls-ca, --tls-cert and --tls-key"},
		{"server gossiping without a key", append(server, "--tls=false", "--gossip-addr", "127.0.0.1:0"), "no --gossip-key-file"},
		{"agent gossiping without a key", append(agent, "--tls=false", "--gossip-join", "127.0.0.1:1"), "no --gossip-key-file"},
		{"a key on the command line", append(server, "--tls=false", "--gossip-key", "abc"), "--gossip-key: a key on the command line"},
		{"a key file others can read", append(server, "--tls=false", "--gossip-addr", "127.0.0.1:0", "--gossip-key-file", key), "has mode 0644"},
	} {
		t.Setenv("LOOM_CONFIG", filepath.Join(dir, "none.toml"))
		os.WriteFile(filepath.Join(dir, "none.toml"), nil, 0o644)
		code, _, errb := runLoom(tt.args...)
		if code == 0 || !strings.Contains(errb, tt.want) {
			t.Errorf("%s: loom %s = %d, %q; want a refusal saying %q", tt.name, strings.Join(tt.args, " "), code, errb, tt.want)
		}
	}
}

func TestReadGossipKeyFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gossip.key")
	text := "dGVzdC1rZXktMDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY=\nYmVuY2gta2V5LTAxMjM0NTY3ODlhYmNkZWYwMTIzNDU=\n"
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	keys, err := readGossipKeyFile(path)
	if err != nil || len(keys) != 2 || len(keys[0]) != 32 {
		t.Errorf("readGossipKeyFile(two keys, 0600) = %d keys, %v; want 2 of 32 bytes", len(keys), err)
	}
	os.WriteFile(path, []byte("\n"), 0o600)
	if _, err := readGossipKeyFile(path); err == nil || !strings.Contains(err.Error(), "holds no key") {
		t.Errorf("readGossipKeyFile(empty) err = %v, want it to say the file holds no key", err)
	}
}
