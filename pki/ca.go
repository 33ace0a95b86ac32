package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// The CA's file names in its directory.
const (
	CACertFile = "loom-ca.pem"
	CAKeyFile  = "loom-ca-key.pem"
)

// Default lifetimes.
const (
	DefaultCADays   = 5 * 365
	DefaultCertDays = 365
)

// ErrExists is returned when an output file exists and Force is not set.
var ErrExists = errors.New("pki: file exists")

// backdate is how far before its creation a certificate becomes valid, so
// that a host whose clock is a little behind accepts it at once.
const backdate = time.Minute

// CA is a loaded certificate authority: its certificate and signing key
// and the path of its certificate file (for Files.CA).
type CA struct {
	Cert     *x509.Certificate
	Key      crypto.Signer
	CertFile string
}

// CAOptions are the settings of CreateCA. The zero value gives a CA valid
// for DefaultCADays that refuses to replace existing files.
type CAOptions struct {
	Days  int       // validity; 0 means DefaultCADays
	Force bool      // replace existing files
	Now   time.Time // creation time; zero means time.Now()
}

// CreateCA makes a self-signed ECDSA P-256 CA and writes it to dir as
// CACertFile and CAKeyFile (the key 0600), creating dir if needed. It
// refuses, with ErrExists, to replace either file unless opts.Force.
func CreateCA(dir string, opts CAOptions) (*CA, error) {
	days, err := days("CAOptions.Days", opts.Days, DefaultCADays)
	if err != nil {
		return nil, err
	}
	certPath, keyPath := filepath.Join(dir, CACertFile), filepath.Join(dir, CAKeyFile)
	if err := checkAbsent(opts.Force, certPath, keyPath); err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("pki: CA key: %w", err)
	}
	serial, err := serialNumber()
	if err != nil {
		return nil, err
	}
	now := now(opts.Now)
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "Loom CA", Organization: []string{"Loom"}},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.AddDate(0, 0, days),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		// The CA signs leaf certificates only, never another CA.
		MaxPathLenZero: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("pki: CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("pki: CA certificate: %w", err)
	}
	if err := writePair(dir, opts.Force, certPath, der, keyPath, key); err != nil {
		return nil, err
	}
	return &CA{Cert: cert, Key: key, CertFile: certPath}, nil
}

// LoadCA reads the CA written by CreateCA in dir.
func LoadCA(dir string) (*CA, error) {
	certPath, keyPath := filepath.Join(dir, CACertFile), filepath.Join(dir, CAKeyFile)
	cert, err := readCert(certPath)
	if err != nil {
		return nil, err
	}
	if !cert.IsCA {
		return nil, fmt.Errorf("pki: %s is not a CA certificate", certPath)
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, fmt.Errorf("pki: CA key: %w", err)
	}
	block, _ := pem.Decode(keyPEM)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("pki: %s holds no PEM PRIVATE KEY block", keyPath)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("pki: %s: %w", keyPath, err)
	}
	key, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("pki: %s: key of type %T cannot sign", keyPath, k)
	}
	if !publicKeysEqual(key.Public(), cert.PublicKey) {
		return nil, fmt.Errorf("pki: %s is not the key of %s", keyPath, certPath)
	}
	return &CA{Cert: cert, Key: key, CertFile: certPath}, nil
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	eq, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && eq.Equal(b)
}

// CertOptions are the settings of CreateCert. The zero value writes to the
// current directory a certificate valid for DefaultCertDays.
type CertOptions struct {
	Dir   string   // output directory; "" means the current directory
	DNS   []string // extra DNS names
	IPs   []net.IP // extra IP addresses
	Days  int      // validity; 0 means DefaultCertDays
	Force bool     // replace existing files
	// NoLocalhost leaves localhost and 127.0.0.1 out of a server
	// certificate, which otherwise carries them so that a client dialing
	// a server on this host by address also verifies.
	NoLocalhost bool
	Now         time.Time // creation time; zero means time.Now()
}

// CertFileNames returns the certificate and key file names for id:
// loom-server-NODE.pem, loom-agent-NODE.pem or loom-cli.pem, and the same
// with -key before .pem.
func CertFileNames(id Identity) (cert, key string) {
	base := "loom-" + string(id.Role)
	if id.Node != "" {
		base += "-" + id.Node
	}
	return base + ".pem", base + "-key.pem"
}

// CreateCert makes a certificate for role and node (empty for RoleCLI)
// signed by ca, and writes it and its key (0600) to opts.Dir under
// CertFileNames. Its DNS names carry the role and node: server.loom and
// NODE.server.loom for a server, NODE.agent.loom for an agent, cli.loom
// for the CLI; then opts.DNS and opts.IPs, and for a server localhost and
// 127.0.0.1 unless opts.NoLocalhost. It may be used for both server and
// client authentication, since servers dial each other and agents. Its
// validity is cut to the CA's. It refuses, with ErrExists, to replace an
// existing file unless opts.Force. The returned Files name the CA's
// certificate and the new files.
func CreateCert(ca *CA, role Role, node string, opts CertOptions) (Files, error) {
	id := Identity{Role: role, Node: node}
	if err := id.Check(); err != nil {
		return Files{}, err
	}
	days, err := days("CertOptions.Days", opts.Days, DefaultCertDays)
	if err != nil {
		return Files{}, err
	}
	var dns []string
	switch role {
	case RoleServer:
		dns = []string{ServerDNSName, id.DNSName()}
	default:
		dns = []string{id.DNSName()}
	}
	var ips []net.IP
	if role == RoleServer && !opts.NoLocalhost {
		dns = append(dns, "localhost")
		ips = append(ips, net.IPv4(127, 0, 0, 1))
	}
	ips = append(ips, opts.IPs...)
	for _, name := range opts.DNS {
		if err := checkExtraDNS(name); err != nil {
			return Files{}, fmt.Errorf("pki: CertOptions.DNS: %w", err)
		}
		if !slices.Contains(dns, name) {
			dns = append(dns, name)
		}
	}
	ips = dedupIPs(ips)
	for _, ip := range ips {
		if ip == nil {
			return Files{}, errors.New("pki: CertOptions.IPs: nil address")
		}
	}

	dir := opts.Dir
	if dir == "" {
		dir = "."
	}
	certName, keyName := CertFileNames(id)
	certPath, keyPath := filepath.Join(dir, certName), filepath.Join(dir, keyName)
	if err := checkAbsent(opts.Force, certPath, keyPath); err != nil {
		return Files{}, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return Files{}, fmt.Errorf("pki: key: %w", err)
	}
	serial, err := serialNumber()
	if err != nil {
		return Files{}, err
	}
	now := now(opts.Now)
	notAfter := now.AddDate(0, 0, days)
	if notAfter.After(ca.Cert.NotAfter) {
		// A certificate is of no use once its CA has expired.
		notAfter = ca.Cert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: id.DNSName(), Organization: []string{"Loom"}, OrganizationalUnit: []string{string(role)}},
		NotBefore:    now.Add(-backdate),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:     dns,
		IPAddresses:  ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		return Files{}, fmt.Errorf("pki: %s certificate: %w", id, err)
	}
	if err := writePair(dir, opts.Force, certPath, der, keyPath, key); err != nil {
		return Files{}, err
	}
	return Files{CA: ca.CertFile, Cert: certPath, Key: keyPath}, nil
}

// checkExtraDNS accepts a host name (or a wildcard *.NAME) outside the loom
// domain, whose names are the role names CreateCert sets itself.
func checkExtraDNS(name string) error {
	lower := strings.ToLower(name)
	if lower == Domain || strings.HasSuffix(lower, "."+Domain) {
		return fmt.Errorf("%q is in the %s domain, which holds role names only", name, Domain)
	}
	if err := checkNodeName(strings.TrimPrefix(name, "*.")); err != nil {
		return fmt.Errorf("%q: %w", name, err)
	}
	return nil
}

func dedupIPs(ips []net.IP) []net.IP {
	var out []net.IP
	for _, ip := range ips {
		if !slices.ContainsFunc(out, ip.Equal) {
			out = append(out, ip)
		}
	}
	return out
}

func days(field string, n, def int) (int, error) {
	switch {
	case n == 0:
		return def, nil
	case n < 0:
		return 0, fmt.Errorf("pki: %s: %d days: want a positive number", field, n)
	}
	return n, nil
}

func now(t time.Time) time.Time {
	if t.IsZero() {
		return time.Now()
	}
	return t
}

func serialNumber() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("pki: serial number: %w", err)
	}
	return n.Add(n, big.NewInt(1)), nil
}

// checkAbsent fails with ErrExists if any of paths exists, unless force.
// Checking all of them first means a refusal writes nothing.
func checkAbsent(force bool, paths ...string) error {
	if force {
		return nil
	}
	for _, p := range paths {
		if _, err := os.Lstat(p); err == nil {
			return fmt.Errorf("%w: %s", ErrExists, p)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("pki: %w", err)
		}
	}
	return nil
}

// writePair writes a certificate (0644) and its key (0600) into dir.
func writePair(dir string, force bool, certPath string, der []byte, keyPath string, key *ecdsa.PrivateKey) error {
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("pki: key: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	if err := writeFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600, force); err != nil {
		return err
	}
	if err := writeFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644, force); err != nil {
		os.Remove(keyPath)
		return err
	}
	return nil
}

// writeFile writes data to a temporary file beside path with mode perm,
// then moves it into place: over an existing file only if force (a hard
// link fails if path exists, so two creators cannot both win).
func writeFile(path string, data []byte, perm os.FileMode, force bool) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	// CreateTemp makes the file 0600; Chmod (not umask) sets perm.
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(perm)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("pki: write %s: %w", path, err)
	}
	if force {
		err = os.Rename(tmp, path)
	} else {
		err = os.Link(tmp, path)
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("%w: %s", ErrExists, path)
		}
	}
	if err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	return nil
}

// readCert reads the first PEM certificate in path.
func readCert(path string) (*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("pki: %s holds no PEM CERTIFICATE block", path)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("pki: %s: %w", path, err)
	}
	return cert, nil
}
