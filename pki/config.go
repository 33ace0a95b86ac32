package pki

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"slices"
	"time"
)

// Files names the PEM files a holder uses: the CA's certificate, which
// verifies peers, and the holder's own certificate and key. A CLI may leave
// Cert and Key empty.
type Files struct {
	CA   string
	Cert string
	Key  string
}

// ClientAuth says what a server-side config asks of a client.
type ClientAuth int

const (
	// ClientCertIfGiven verifies a client certificate against the CA if the
	// client presents one and admits a client without one. For the
	// servers' user-facing port, where agents and other servers present
	// certificates and users authenticate otherwise (MUNGE); each method
	// then says whom it admits (pkirpc.RequireRole, pkirpc.RequireAgent).
	ClientCertIfGiven ClientAuth = iota
	// ClientCertRequired refuses at the handshake a client without a
	// certificate the CA verifies. For ports only daemons use: Raft, the
	// agents' port.
	ClientCertRequired
)

// ServerOptions are the settings of ServerConfig.
type ServerOptions struct {
	ClientAuth ClientAuth
	// Roles, if not empty, refuses at the handshake a client certificate of
	// any other role. A client certificate that names no single role is
	// refused whatever Roles holds.
	Roles []Role
}

// ServerConfig returns the config of a daemon's listening side: it
// presents f.Cert and verifies client certificates against f.CA as opts
// say. TLS 1.3 at least.
func ServerConfig(f Files, opts ServerOptions) (*tls.Config, error) {
	pool, cert, err := f.load(true)
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{*cert},
		ClientCAs:    pool,
		ClientAuth:   tls.VerifyClientCertIfGiven,
	}
	switch opts.ClientAuth {
	case ClientCertIfGiven:
	case ClientCertRequired:
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	default:
		return nil, fmt.Errorf("pki: ServerOptions.ClientAuth: unknown value %d", opts.ClientAuth)
	}
	for _, r := range opts.Roles {
		if !slices.Contains(Roles, r) {
			return nil, fmt.Errorf("pki: ServerOptions.Roles: unknown role %q", r)
		}
	}
	roles := slices.Clone(opts.Roles)
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return nil // ClientAuth has already decided
		}
		id, err := PeerIdentity(cs)
		if err != nil {
			return err
		}
		if len(roles) > 0 && !slices.Contains(roles, id.Role) {
			return fmt.Errorf("pki: %s certificate refused: this port admits %s only", id, roleList(roles))
		}
		return nil
	}
	return cfg, nil
}

// DaemonClientConfig returns the config with which a server or agent
// dials a server: it presents f.Cert and requires the server to present a
// certificate for ServerDNSName, of role server, whatever address it was
// dialed at.
func DaemonClientConfig(f Files) (*tls.Config, error) {
	return clientConfig(f, true, Identity{Role: RoleServer})
}

// AgentClientConfig returns the config with which a server dials the agent
// of node: it presents f.Cert and requires the agent certificate of that
// node.
func AgentClientConfig(f Files, node string) (*tls.Config, error) {
	id := Identity{Role: RoleAgent, Node: node}
	if err := id.Check(); err != nil {
		return nil, err
	}
	return clientConfig(f, true, id)
}

// CLIClientConfig returns the config with which a command-line client dials
// a server: it requires a server certificate for ServerDNSName and
// presents f.Cert if f names one (both Cert and Key, or neither).
func CLIClientConfig(f Files) (*tls.Config, error) {
	return clientConfig(f, false, Identity{Role: RoleServer})
}

// clientConfig verifies the server's name (want's, or ServerDNSName for
// any server) and, beyond the name, that its certificate names exactly
// want's role (and node).
func clientConfig(f Files, needCert bool, want Identity) (*tls.Config, error) {
	pool, cert, err := f.load(needCert)
	if err != nil {
		return nil, err
	}
	name := ServerDNSName
	if want.Node != "" {
		name = want.DNSName()
	}
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS13,
		RootCAs:    pool,
		ServerName: name,
		VerifyConnection: func(cs tls.ConnectionState) error {
			id, err := PeerIdentity(cs)
			if err != nil {
				return err
			}
			if id.Role != want.Role || want.Node != "" && id.Node != want.Node {
				return fmt.Errorf("pki: dialed %s but the peer holds the certificate of %s", dialed(want), id)
			}
			return nil
		},
	}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	return cfg, nil
}

func dialed(want Identity) string {
	if want.Node == "" {
		return "a " + string(want.Role)
	}
	return want.String()
}

// Identity loads f and returns the identity of the holder of f.Cert after
// checking that the CA verifies it now. A daemon calls it at start to
// refuse a certificate of the wrong role or node.
func (f Files) Identity() (Identity, error) {
	_, cert, err := f.load(true)
	if err != nil {
		return Identity{}, err
	}
	id, err := IdentityOf(cert.Leaf)
	if err != nil {
		return Identity{}, fmt.Errorf("pki: Files.Cert %s: %w", f.Cert, err)
	}
	return id, nil
}

// load reads the CA pool and, if f names them (or needCert), the key pair,
// whose certificate must be one the CA verifies now.
func (f Files) load(needCert bool) (*x509.CertPool, *tls.Certificate, error) {
	if f.CA == "" {
		return nil, nil, errors.New("pki: Files.CA is empty: name the CA certificate (" + CACertFile + ")")
	}
	caPEM, err := os.ReadFile(f.CA)
	if err != nil {
		return nil, nil, fmt.Errorf("pki: Files.CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, nil, fmt.Errorf("pki: Files.CA: %s holds no PEM certificate", f.CA)
	}
	switch {
	case f.Cert == "" && f.Key == "" && !needCert:
		return pool, nil, nil
	case f.Cert == "":
		return nil, nil, errors.New("pki: Files.Cert is empty: name this holder's certificate")
	case f.Key == "":
		return nil, nil, errors.New("pki: Files.Key is empty: name the key of " + f.Cert)
	}
	pair, err := tls.LoadX509KeyPair(f.Cert, f.Key)
	if err != nil {
		return nil, nil, fmt.Errorf("pki: Files.Cert and Files.Key: %w", err)
	}
	if _, err := pair.Leaf.Verify(x509.VerifyOptions{
		Roots:       pool,
		CurrentTime: time.Now(),
		KeyUsages:   []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	}); err != nil {
		return nil, nil, fmt.Errorf("pki: Files.Cert %s is not valid under Files.CA %s: %w", f.Cert, f.CA, err)
	}
	return pool, &pair, nil
}
