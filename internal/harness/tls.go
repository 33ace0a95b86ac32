package harness

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/loomhpc/loom/pki"
)

// PKI is a test cluster's certificate authority in a directory, which
// hands out the certificates of its servers and agents.
type PKI struct {
	Dir string
	ca  *pki.CA
}

// NewPKI creates a CA in dir (made if need be), or loads the one an
// earlier call made there.
func NewPKI(dir string) (*PKI, error) {
	ca, err := pki.LoadCA(dir)
	if err != nil {
		ca, err = pki.CreateCA(dir, pki.CAOptions{})
	}
	if err != nil {
		return nil, fmt.Errorf("harness: %w", err)
	}
	return &PKI{Dir: dir, ca: ca}, nil
}

// Files returns the files of the certificate of role for node, creating
// it the first time.
func (p *PKI) Files(role pki.Role, node string) (pki.Files, error) {
	cert, key := pki.CertFileNames(pki.Identity{Role: role, Node: node})
	f := pki.Files{CA: p.ca.CertFile, Cert: filepath.Join(p.Dir, cert), Key: filepath.Join(p.Dir, key)}
	if _, err := os.Stat(f.Cert); err == nil {
		return f, nil
	}
	f, err := pki.CreateCert(p.ca, role, node, pki.CertOptions{Dir: p.Dir})
	if err != nil && !errors.Is(err, pki.ErrExists) {
		return pki.Files{}, fmt.Errorf("harness: %w", err)
	}
	return f, nil
}

// tlsArgs returns the daemon flags that name f, or those that turn TLS
// off explicitly when p is nil.
func (p *PKI) tlsArgs(role pki.Role, node string) ([]string, error) {
	if p == nil {
		return []string{"--tls=false"}, nil
	}
	f, err := p.Files(role, node)
	if err != nil {
		return nil, err
	}
	return []string{"--tls-ca", f.CA, "--tls-cert", f.Cert, "--tls-key", f.Key}, nil
}

// DialAs returns a connection to addr that presents the certificate of
// role for node, as a server or an agent would: for tools that stand in
// for daemons (a benchmark registering simulated nodes).
func (p *PKI) DialAs(addr string, role pki.Role, node string) (*grpc.ClientConn, error) {
	f, err := p.Files(role, node)
	if err != nil {
		return nil, err
	}
	tc, err := pki.DaemonClientConfig(f)
	if err != nil {
		return nil, fmt.Errorf("harness: %w", err)
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(tc)))
	if err != nil {
		return nil, fmt.Errorf("harness: dial %s: %w", addr, err)
	}
	return conn, nil
}

// WriteGossipKey writes key (base64) to dir/gossip.key, mode 0600, and
// returns the file's path.
func WriteGossipKey(dir, key string) (string, error) {
	path := filepath.Join(dir, "gossip.key")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("harness: %w", err)
	}
	if err := os.WriteFile(path, []byte(key+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("harness: %w", err)
	}
	return path, nil
}
