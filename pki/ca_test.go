package pki

import (
	"bytes"
	"crypto/x509"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

func mode(t *testing.T, path string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

func TestCreateCA(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	now := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
	ca, err := CreateCA(dir, CAOptions{Now: now})
	if err != nil {
		t.Fatalf("CreateCA: %v", err)
	}
	if !ca.Cert.IsCA || !ca.Cert.MaxPathLenZero {
		t.Errorf("CA certificate IsCA %v MaxPathLenZero %v, want both", ca.Cert.IsCA, ca.Cert.MaxPathLenZero)
	}
	if want := now.AddDate(0, 0, DefaultCADays); !ca.Cert.NotAfter.Equal(want) {
		t.Errorf("CA NotAfter = %v, want %v", ca.Cert.NotAfter, want)
	}
	if got := mode(t, filepath.Join(dir, CAKeyFile)); got != 0o600 {
		t.Errorf("CA key mode = %v, want 0600", got)
	}
	if got := mode(t, filepath.Join(dir, CACertFile)); got != 0o644 {
		t.Errorf("CA certificate mode = %v, want 0644", got)
	}
	loaded, err := LoadCA(dir)
	if err != nil {
		t.Fatalf("LoadCA: %v", err)
	}
	if !loaded.Cert.Equal(ca.Cert) || loaded.CertFile != filepath.Join(dir, CACertFile) {
		t.Errorf("LoadCA gave a different CA: %s", loaded.CertFile)
	}

	// A second CreateCA must neither succeed nor touch the first CA.
	before, _ := os.ReadFile(filepath.Join(dir, CAKeyFile))
	if _, err := CreateCA(dir, CAOptions{}); !errors.Is(err, ErrExists) {
		t.Errorf("CreateCA over an existing CA = %v, want ErrExists", err)
	}
	after, _ := os.ReadFile(filepath.Join(dir, CAKeyFile))
	if !bytes.Equal(before, after) {
		t.Errorf("a refused CreateCA changed the CA key")
	}
	// Only the certificate present still refuses, and writes no key.
	dir2 := t.TempDir()
	os.WriteFile(filepath.Join(dir2, CACertFile), []byte("x"), 0o644)
	if _, err := CreateCA(dir2, CAOptions{}); !errors.Is(err, ErrExists) {
		t.Errorf("CreateCA over an existing certificate = %v, want ErrExists", err)
	}
	if _, err := os.Stat(filepath.Join(dir2, CAKeyFile)); err == nil {
		t.Errorf("a refused CreateCA wrote %s", CAKeyFile)
	}

	forced, err := CreateCA(dir, CAOptions{Force: true, Days: 10})
	if err != nil {
		t.Fatalf("CreateCA(Force): %v", err)
	}
	if forced.Cert.Equal(ca.Cert) {
		t.Errorf("CreateCA(Force) kept the old CA")
	}
	if got := mode(t, filepath.Join(dir, CAKeyFile)); got != 0o600 {
		t.Errorf("replaced CA key mode = %v, want 0600", got)
	}
	if _, err := CreateCA(t.TempDir(), CAOptions{Days: -1}); err == nil {
		t.Errorf("CreateCA(Days -1) succeeded")
	}
}

func TestLoadCAMismatchedKey(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	CreateCA(a, CAOptions{})
	CreateCA(b, CAOptions{})
	key, _ := os.ReadFile(filepath.Join(b, CAKeyFile))
	os.WriteFile(filepath.Join(a, CAKeyFile), key, 0o600)
	if _, err := LoadCA(a); err == nil {
		t.Errorf("LoadCA with another CA's key succeeded")
	}
	if _, err := LoadCA(t.TempDir()); err == nil {
		t.Errorf("LoadCA of an empty directory succeeded")
	}
}

func TestCreateCert(t *testing.T) {
	p := NewTestPKI(t)
	tests := []struct {
		role      Role
		node      string
		opts      CertOptions
		wantDNS   []string
		wantIPs   []string
		wantFiles [2]string
	}{
		{RoleServer, "s1", CertOptions{},
			[]string{"server.loom", "s1.server.loom", "localhost"}, []string{"127.0.0.1"},
			[2]string{"loom-server-s1.pem", "loom-server-s1-key.pem"}},
		{RoleServer, "s2", CertOptions{NoLocalhost: true, DNS: []string{"s2.example.org"}, IPs: []net.IP{net.ParseIP("10.0.0.2")}},
			[]string{"server.loom", "s2.server.loom", "s2.example.org"}, []string{"10.0.0.2"},
			[2]string{"loom-server-s2.pem", "loom-server-s2-key.pem"}},
		{RoleServer, "s3", CertOptions{DNS: []string{"localhost"}, IPs: []net.IP{net.ParseIP("127.0.0.1")}},
			[]string{"server.loom", "s3.server.loom", "localhost"}, []string{"127.0.0.1"},
			[2]string{"loom-server-s3.pem", "loom-server-s3-key.pem"}},
		{RoleAgent, "node7", CertOptions{},
			[]string{"node7.agent.loom"}, nil,
			[2]string{"loom-agent-node7.pem", "loom-agent-node7-key.pem"}},
		{RoleCLI, "", CertOptions{},
			[]string{"cli.loom"}, nil,
			[2]string{"loom-cli.pem", "loom-cli-key.pem"}},
	}
	for _, tt := range tests {
		t.Run(string(tt.role)+"-"+tt.node, func(t *testing.T) {
			tt.opts.Dir = t.TempDir()
			f, err := CreateCert(p.CA, tt.role, tt.node, tt.opts)
			if err != nil {
				t.Fatalf("CreateCert: %v", err)
			}
			if want := [2]string{filepath.Join(tt.opts.Dir, tt.wantFiles[0]), filepath.Join(tt.opts.Dir, tt.wantFiles[1])}; f.Cert != want[0] || f.Key != want[1] || f.CA != p.CA.CertFile {
				t.Errorf("CreateCert files = %+v, want %q and CA %q", f, want, p.CA.CertFile)
			}
			if got := mode(t, f.Key); got != 0o600 {
				t.Errorf("key mode = %v, want 0600", got)
			}
			cert, err := readCert(f.Cert)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(cert.DNSNames, tt.wantDNS) {
				t.Errorf("DNSNames = %q, want %q", cert.DNSNames, tt.wantDNS)
			}
			var ips []string
			for _, ip := range cert.IPAddresses {
				ips = append(ips, ip.String())
			}
			if !slices.Equal(ips, tt.wantIPs) {
				t.Errorf("IPAddresses = %q, want %q", ips, tt.wantIPs)
			}
			if cert.IsCA {
				t.Errorf("leaf certificate is a CA")
			}
			if !slices.Contains(cert.ExtKeyUsage, x509.ExtKeyUsageServerAuth) || !slices.Contains(cert.ExtKeyUsage, x509.ExtKeyUsageClientAuth) {
				t.Errorf("ExtKeyUsage = %v, want server and client auth", cert.ExtKeyUsage)
			}
			id, err := f.Identity()
			if want := (Identity{tt.role, tt.node}); err != nil || id != want {
				t.Errorf("Files.Identity() = %v, %v; want %v", id, err, want)
			}
			if _, err := CreateCert(p.CA, tt.role, tt.node, tt.opts); !errors.Is(err, ErrExists) {
				t.Errorf("CreateCert again = %v, want ErrExists", err)
			}
			tt.opts.Force = true
			if _, err := CreateCert(p.CA, tt.role, tt.node, tt.opts); err != nil {
				t.Errorf("CreateCert(Force) = %v", err)
			}
		})
	}
}

func TestCreateCertValidity(t *testing.T) {
	now := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
	dir := t.TempDir()
	ca, err := CreateCA(dir, CAOptions{Now: now, Days: 30})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		days int
		want time.Time
	}{
		{10, now.AddDate(0, 0, 10)},
		{0, ca.Cert.NotAfter}, // the default year is cut to the CA's 30 days
	} {
		f, err := CreateCert(ca, RoleAgent, "n1", CertOptions{Dir: dir, Days: tt.days, Now: now, Force: true})
		if err != nil {
			t.Fatal(err)
		}
		cert, _ := readCert(f.Cert)
		if !cert.NotAfter.Equal(tt.want) {
			t.Errorf("CreateCert(Days %d) NotAfter = %v, want %v", tt.days, cert.NotAfter, tt.want)
		}
	}
}

func TestCreateCertRefuses(t *testing.T) {
	p := NewTestPKI(t)
	tests := []struct {
		name string
		role Role
		node string
		opts CertOptions
	}{
		{"unknown role", "admin", "x", CertOptions{}},
		{"server without node", RoleServer, "", CertOptions{}},
		{"agent with bad node", RoleAgent, "node_7", CertOptions{}},
		{"cli with node", RoleCLI, "laptop", CertOptions{}},
		{"dns in loom domain", RoleAgent, "n1", CertOptions{DNS: []string{"n2.agent.loom"}}},
		{"bad dns", RoleAgent, "n1", CertOptions{DNS: []string{"a b"}}},
		{"negative days", RoleAgent, "n1", CertOptions{Days: -5}},
	}
	for _, tt := range tests {
		tt.opts.Dir = t.TempDir()
		if _, err := CreateCert(p.CA, tt.role, tt.node, tt.opts); err == nil {
			t.Errorf("CreateCert(%s) succeeded", tt.name)
		}
		if entries, _ := os.ReadDir(tt.opts.Dir); len(entries) > 0 {
			t.Errorf("CreateCert(%s) left %d files", tt.name, len(entries))
		}
	}
}
