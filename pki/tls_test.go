package pki

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// handshakeResult is what the listening side saw of one connection.
type handshakeResult struct {
	peer Identity // zero when the client presented no certificate
	err  error
}

// handshake runs one TLS connection over loopback and returns what each
// side saw. The server writes one byte after its handshake, and the client
// reads it: under TLS 1.3 a client learns that the server refused its
// certificate only when it reads.
func handshake(t *testing.T, server, client *tls.Config) (handshakeResult, error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan handshakeResult, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- handshakeResult{err: err}
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		tc := tls.Server(c, server)
		if err := tc.Handshake(); err != nil {
			done <- handshakeResult{err: err}
			return
		}
		id, err := PeerIdentity(tc.ConnectionState())
		if errors.Is(err, ErrNoCertificate) {
			err = nil
		}
		tc.Write([]byte{'k'})
		done <- handshakeResult{peer: id, err: err}
	}()
	clientErr := func() error {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", ln.Addr().String(), client)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		_, err = io.ReadFull(c, make([]byte, 1))
		return err
	}()
	return <-done, clientErr
}

// must returns a function that fails t on a config builder's error.
func must(t *testing.T) func(*tls.Config, error) *tls.Config {
	return func(cfg *tls.Config, err error) *tls.Config {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
}

// rawClient presents f's certificate without checking it first, as a
// hand-made client could, and verifies the server as the configs do.
func rawClient(t *testing.T, p *TestPKI, f Files) *tls.Config {
	t.Helper()
	cfg := must(t)(CLIClientConfig(Files{CA: p.CA.CertFile}))
	pair, err := tls.LoadX509KeyPair(f.Cert, f.Key)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Certificates = []tls.Certificate{pair}
	return cfg
}

func TestHandshakes(t *testing.T) {
	p := NewTestPKI(t)
	other := NewTestPKI(t) // another cluster's CA
	s1, s2 := p.Files(RoleServer, "s1"), p.Files(RoleServer, "s2")
	node7, cli := p.Files(RoleAgent, "node7"), p.Files(RoleCLI, "")
	expiredDir := t.TempDir()
	expired, err := CreateCert(p.CA, RoleServer, "s9", CertOptions{Dir: expiredDir, Days: 1, Now: time.Now().AddDate(0, 0, -2)})
	if err != nil {
		t.Fatal(err)
	}

	ifGiven := func(f Files) *tls.Config { return must(t)(ServerConfig(f, ServerOptions{})) }
	serversOnly := func(f Files) *tls.Config {
		return must(t)(ServerConfig(f, ServerOptions{ClientAuth: ClientCertRequired, Roles: []Role{RoleServer}}))
	}
	required := func(f Files) *tls.Config {
		return must(t)(ServerConfig(f, ServerOptions{ClientAuth: ClientCertRequired}))
	}
	daemon := func(f Files) *tls.Config { return must(t)(DaemonClientConfig(f)) }
	cliNoCert := must(t)(CLIClientConfig(Files{CA: p.CA.CertFile}))
	// Certificates the CA signed for names no single role: a server's
	// name beside an agent's, and a CLI's beside a server's.
	twoRoles := func(cfg *tls.Config, names ...string) *tls.Config {
		cfg.Certificates = []tls.Certificate{signPair(t, p.CA, names...)}
		return cfg
	}

	tests := []struct {
		name     string
		server   *tls.Config
		client   *tls.Config
		wantPeer Identity // the server's view of the client, when accepted
		// refusedBy is "" when the connection must succeed, else the side
		// that must refuse it and a part of its error.
		refusedBy, wantErr string
	}{
		{"server to server", serversOnly(s1), daemon(s2), Identity{RoleServer, "s2"}, "", ""},
		{"agent to server rpc", ifGiven(s1), daemon(node7), Identity{RoleAgent, "node7"}, "", ""},
		{"cli with cert", ifGiven(s1), must(t)(CLIClientConfig(cli)), Identity{RoleCLI, ""}, "", ""},
		{"cli without cert where optional", ifGiven(s1), cliNoCert, Identity{}, "", ""},
		{"server to agent", required(node7), must(t)(AgentClientConfig(s1, "node7")), Identity{RoleServer, "s1"}, "", ""},

		{"agent cert on a servers-only port", serversOnly(s1), daemon(node7), Identity{}, "server", "this port admits server only"},
		{"cli cert on a servers-only port", serversOnly(s1), daemon(cli), Identity{}, "server", "this port admits server only"},
		{"no cert where required", serversOnly(s1), cliNoCert, Identity{}, "server", "certificate"},
		{"client cert of another CA", serversOnly(s1), rawClient(t, p, other.Files(RoleServer, "s2")), Identity{}, "server", "unknown authority"},
		{"expired client cert", serversOnly(s1), rawClient(t, p, expired), Identity{}, "server", "expired"},
		{"server cert of another CA", must(t)(ServerConfig(other.Files(RoleServer, "s1"), ServerOptions{})), daemon(s2), Identity{}, "client", "unknown authority"},
		{"cli reaches an agent posing as server", ifGiven(node7), cliNoCert, Identity{}, "client", "server.loom"},
		{"daemon reaches an agent posing as server", ifGiven(node7), daemon(s2), Identity{}, "client", "server.loom"},
		{"server dials the wrong agent", required(node7), must(t)(AgentClientConfig(s1, "node8")), Identity{}, "client", "node8.agent.loom"},
		{"server dials a server as an agent", required(s2), must(t)(AgentClientConfig(s1, "node7")), Identity{}, "client", "node7.agent.loom"},
		{"daemon reaches a cli cert", ifGiven(cli), daemon(s2), Identity{}, "client", "server.loom"},
		{"server cert that also names an agent", twoRoles(ifGiven(s1), "server.loom", "s1.server.loom", "node7.agent.loom"), cliNoCert, Identity{}, "client", "several roles"},
		{"client cert that names cli and server", ifGiven(s1), twoRoles(cliNoCert.Clone(), "cli.loom", "s2.server.loom"), Identity{}, "server", "several roles"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, clientErr := handshake(t, tt.server, tt.client)
			switch tt.refusedBy {
			case "":
				if srv.err != nil || clientErr != nil {
					t.Fatalf("handshake failed: server %v, client %v", srv.err, clientErr)
				}
				if srv.peer != tt.wantPeer {
					t.Errorf("server saw peer %v, want %v", srv.peer, tt.wantPeer)
				}
			case "server":
				if srv.err == nil || !strings.Contains(srv.err.Error(), tt.wantErr) {
					t.Errorf("server error = %v, want one containing %q", srv.err, tt.wantErr)
				}
				if clientErr == nil {
					t.Errorf("client read a byte from a server that refused it")
				}
			case "client":
				if clientErr == nil || !strings.Contains(clientErr.Error(), tt.wantErr) {
					t.Errorf("client error = %v, want one containing %q", clientErr, tt.wantErr)
				}
				if srv.err == nil {
					t.Errorf("server finished a handshake the client refused")
				}
			}
			if tt.client.MinVersion != tls.VersionTLS13 || tt.server.MinVersion != tls.VersionTLS13 {
				t.Errorf("MinVersion client %x server %x, want TLS 1.3", tt.client.MinVersion, tt.server.MinVersion)
			}
		})
	}
}

func TestConfigFiles(t *testing.T) {
	p := NewTestPKI(t)
	s1 := p.Files(RoleServer, "s1")
	expired, err := CreateCert(p.CA, RoleServer, "s9", CertOptions{Dir: t.TempDir(), Days: 1, Now: time.Now().AddDate(0, 0, -2)})
	if err != nil {
		t.Fatal(err)
	}
	other := NewTestPKI(t)
	tests := []struct {
		name    string
		build   func() error
		wantErr string
	}{
		{"server without CA", func() error { _, err := ServerConfig(Files{Cert: s1.Cert, Key: s1.Key}, ServerOptions{}); return err }, "Files.CA"},
		{"server without cert", func() error { _, err := ServerConfig(Files{CA: s1.CA}, ServerOptions{}); return err }, "Files.Cert"},
		{"daemon without key", func() error { _, err := DaemonClientConfig(Files{CA: s1.CA, Cert: s1.Cert}); return err }, "Files.Key"},
		{"cli with cert but no key", func() error { _, err := CLIClientConfig(Files{CA: s1.CA, Cert: s1.Cert}); return err }, "Files.Key"},
		{"missing CA file", func() error { _, err := CLIClientConfig(Files{CA: s1.CA + ".nope"}); return err }, "Files.CA"},
		{"CA file that is a key", func() error { _, err := CLIClientConfig(Files{CA: s1.Key}); return err }, "Files.CA"},
		{"cert and key of two holders", func() error {
			_, err := DaemonClientConfig(Files{CA: s1.CA, Cert: s1.Cert, Key: p.Files(RoleAgent, "n1").Key})
			return err
		}, "Files.Cert and Files.Key"},
		{"expired own cert", func() error { _, err := DaemonClientConfig(expired); return err }, "expired"},
		{"own cert of another CA", func() error {
			f := other.Files(RoleServer, "s1")
			f.CA = s1.CA
			_, err := ServerConfig(f, ServerOptions{})
			return err
		}, "not valid under Files.CA"},
		{"unknown client auth", func() error { _, err := ServerConfig(s1, ServerOptions{ClientAuth: 7}); return err }, "ServerOptions.ClientAuth"},
		{"unknown role", func() error { _, err := ServerConfig(s1, ServerOptions{Roles: []Role{"admin"}}); return err }, "ServerOptions.Roles"},
		{"agent config with bad node", func() error { _, err := AgentClientConfig(s1, "a b"); return err }, "node name"},
	}
	for _, tt := range tests {
		if err := tt.build(); err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("%s: error %v, want one containing %q", tt.name, err, tt.wantErr)
		}
	}
}
