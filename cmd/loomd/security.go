package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/loomhpc/loom/pki"
)

// daemonSecurity holds the flags both daemons share for TLS and the
// gossip key.
type daemonSecurity struct {
	tls               bool
	ca, cert, key     string
	gossipKeyFile     string
	insecureGossip    bool
	gossipKeyRefused  string
	whose, certCreate string // for messages: "server" and "--server NAME"
}

func (d *daemonSecurity) register(fs *flag.FlagSet, whose, certCreate string) {
	d.whose, d.certCreate = whose, certCreate
	fs.BoolVar(&d.tls, "tls", true, "mutual TLS with the other daemons; false runs in plaintext, trusting every host that reaches the ports (a warning is logged)")
	fs.StringVar(&d.ca, "tls-ca", "", "the cluster CA's certificate (loom tls ca create)")
	fs.StringVar(&d.cert, "tls-cert", "", "this "+whose+"'s certificate (loom tls cert create "+certCreate+")")
	fs.StringVar(&d.key, "tls-key", "", "the key of --tls-cert")
	fs.StringVar(&d.gossipKeyFile, "gossip-key-file", "", "file (mode 0600) holding the gossip encryption keyring: base64 keys, comma- or newline-separated, the first encrypts (loom operator gossip keygen)")
	fs.BoolVar(&d.insecureGossip, "insecure-gossip", false, "gossip without encryption when no --gossip-key-file is given")
	fs.StringVar(&d.gossipKeyRefused, "gossip-key", "", "refused: a key on the command line is visible to every user of the host; use --gossip-key-file")
}

// check refuses settings that cannot work together, before any file is
// read (loom config check runs it too).
func (d *daemonSecurity) check(gossip bool) error {
	if d.gossipKeyRefused != "" {
		return errors.New("--gossip-key: a key on the command line (or in the environment of ps) is readable by every user of the host: write it to a file of mode 0600 and pass --gossip-key-file")
	}
	if gossip && d.gossipKeyFile == "" && !d.insecureGossip {
		return errors.New("gossip is on but no --gossip-key-file is given: make a key with loom operator gossip keygen, write it to a file of mode 0600, and pass --gossip-key-file (or --insecure-gossip to gossip in the clear)")
	}
	if d.tls && (d.ca == "" || d.cert == "" || d.key == "") {
		return fmt.Errorf("--tls-ca, --tls-cert and --tls-key (tls_ca, tls_cert, tls_key) must name the cluster's CA and this %s's certificate and key (loom tls ca create; loom tls cert create %s), or set --tls=false (tls = false) to run in plaintext", d.whose, d.certCreate)
	}
	return nil
}

// files returns the TLS files, nil with --tls=false.
func (d *daemonSecurity) files() *pki.Files {
	if !d.tls {
		return nil
	}
	return &pki.Files{CA: d.ca, Cert: d.cert, Key: d.key}
}

// gossipKeys reads the keyring from --gossip-key-file, refusing a file
// that others may read.
func (d *daemonSecurity) gossipKeys() ([][]byte, error) {
	if d.gossipKeyFile == "" {
		return nil, nil
	}
	return readGossipKeyFile(d.gossipKeyFile)
}

// readGossipKeyFile reads a keyring file: base64 keys separated by commas
// or lines. Its mode must give nothing to the group or others.
func readGossipKeyFile(path string) ([][]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("--gossip-key-file: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("--gossip-key-file: %s has mode %04o: others may read the key; chmod 600 %s", path, fi.Mode().Perm(), path)
	}
	text, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--gossip-key-file: %w", err)
	}
	keys, err := parseKeys(strings.ReplaceAll(string(text), "\n", ","))
	if err != nil {
		return nil, fmt.Errorf("--gossip-key-file: %s: %w", path, err)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("--gossip-key-file: %s holds no key", path)
	}
	return keys, nil
}
