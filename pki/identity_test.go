package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"testing"
	"time"
)

// signNames returns a certificate for dnsNames signed by ca, whatever the
// names: CreateCert would refuse most of the odd ones tested here.
func signNames(t *testing.T, ca *CA, dnsNames ...string) *x509.Certificate {
	t.Helper()
	return signPair(t, ca, dnsNames...).Leaf
}

// signPair is signNames with the key, ready for a tls.Config.
func signPair(t *testing.T, ca *CA, dnsNames ...string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:     dnsNames,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: cert}
}

func TestIdentityOf(t *testing.T) {
	p := NewTestPKI(t)
	tests := []struct {
		names []string
		want  Identity // zero: refused with ErrBadIdentity
	}{
		{[]string{"server.loom", "s1.server.loom", "localhost"}, Identity{RoleServer, "s1"}},
		{[]string{"s1.server.loom"}, Identity{RoleServer, "s1"}},
		{[]string{"node7.agent.loom"}, Identity{RoleAgent, "node7"}},
		{[]string{"gpu01.rack2.agent.loom", "gpu01.example.org"}, Identity{RoleAgent, "gpu01.rack2"}},
		{[]string{"Node7.AGENT.loom"}, Identity{RoleAgent, "Node7"}},
		{[]string{"cli.loom"}, Identity{RoleCLI, ""}},
		{[]string{"s1.server.loom", "s1.server.loom"}, Identity{RoleServer, "s1"}},
		// No role, or several.
		{nil, Identity{}},
		{[]string{"localhost", "example.org"}, Identity{}},
		{[]string{"server.loom", "s1.server.loom", "node7.agent.loom"}, Identity{}},
		{[]string{"cli.loom", "node7.agent.loom"}, Identity{}},
		{[]string{"cli.loom", "server.loom", "s1.server.loom"}, Identity{}},
		// A server or agent must name exactly one node.
		{[]string{"server.loom"}, Identity{}},
		{[]string{"node7.agent.loom", "node8.agent.loom"}, Identity{}},
		{[]string{"s1.server.loom", "s2.server.loom"}, Identity{}},
		// Names in the loom domain that are no role name, or bad nodes.
		{[]string{"node7.agent.loom", "loom"}, Identity{}},
		{[]string{"node7.agent.loom", "x.cli.loom"}, Identity{}},
		{[]string{"agent.loom"}, Identity{}},
		{[]string{".agent.loom"}, Identity{}},
		{[]string{"a_b.agent.loom"}, Identity{}},
		{[]string{"*.agent.loom"}, Identity{}},
	}
	for _, tt := range tests {
		got, err := IdentityOf(signNames(t, p.CA, tt.names...))
		if tt.want == (Identity{}) {
			if !errors.Is(err, ErrBadIdentity) {
				t.Errorf("IdentityOf(%q) = %v, %v; want ErrBadIdentity", tt.names, got, err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("IdentityOf(%q) = %v, %v; want %v", tt.names, got, err, tt.want)
		}
	}
}

func TestIdentityNames(t *testing.T) {
	tests := []struct {
		id             Identity
		str, dns, file string
	}{
		{Identity{RoleServer, "s1"}, "server s1", "s1.server.loom", "loom-server-s1.pem"},
		{Identity{RoleAgent, "node7"}, "agent node7", "node7.agent.loom", "loom-agent-node7.pem"},
		{Identity{RoleCLI, ""}, "cli", "cli.loom", "loom-cli.pem"},
	}
	for _, tt := range tests {
		if got := tt.id.String(); got != tt.str {
			t.Errorf("%#v.String() = %q, want %q", tt.id, got, tt.str)
		}
		if got := tt.id.DNSName(); got != tt.dns {
			t.Errorf("%#v.DNSName() = %q, want %q", tt.id, got, tt.dns)
		}
		if got, _ := CertFileNames(tt.id); got != tt.file {
			t.Errorf("CertFileNames(%#v) = %q, want %q", tt.id, got, tt.file)
		}
	}
}

func TestIdentityCheck(t *testing.T) {
	tests := []struct {
		id Identity
		ok bool
	}{
		{Identity{RoleServer, "s1"}, true},
		{Identity{RoleAgent, "gpu-01.rack2"}, true},
		{Identity{RoleCLI, ""}, true},
		{Identity{RoleServer, ""}, false},
		{Identity{RoleAgent, "-node"}, false},
		{Identity{RoleAgent, "node-"}, false},
		{Identity{RoleAgent, "a..b"}, false},
		{Identity{RoleAgent, "node/7"}, false},
		{Identity{RoleAgent, "node 7"}, false},
		{Identity{RoleCLI, "laptop"}, false},
		{Identity{"admin", "x"}, false},
	}
	for _, tt := range tests {
		if err := tt.id.Check(); (err == nil) != tt.ok {
			t.Errorf("%#v.Check() = %v, want ok %v", tt.id, err, tt.ok)
		}
	}
}
