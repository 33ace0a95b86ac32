package pki

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Role is what a certificate's holder is to the cluster: a server, the
// agent of one node, or a command-line client.
type Role string

// The roles a Loom certificate may carry.
const (
	RoleServer Role = "server"
	RoleAgent  Role = "agent"
	RoleCLI    Role = "cli"
)

// Roles lists every role, in the order the command's help gives them.
var Roles = []Role{RoleServer, RoleAgent, RoleCLI}

// Domain is the DNS suffix under which every role name lives. It is not a
// real domain: the names exist only in certificates and in the server name
// a client verifies.
const Domain = "loom"

// ServerDNSName is the name every server certificate carries and every
// client verifies when it dials a server, whichever server it reaches.
const ServerDNSName = "server." + Domain

// CLIDNSName is the name a CLI certificate carries.
const CLIDNSName = "cli." + Domain

// Errors that identity checks wrap.
var (
	// ErrNotTLS: the connection is not TLS, so its peer has no certificate.
	ErrNotTLS = errors.New("pki: connection is not TLS")
	// ErrNoCertificate: the peer presented no certificate that the CA
	// verified.
	ErrNoCertificate = errors.New("pki: peer presented no verified certificate")
	// ErrBadIdentity: the certificate does not name exactly one role (and,
	// for servers and agents, one node).
	ErrBadIdentity = errors.New("pki: certificate does not name one Loom role")
)

// Identity is who a verified certificate says its holder is. Node is the
// node name of a server or agent and empty for a CLI certificate.
type Identity struct {
	Role Role
	Node string
}

// String returns "server s1", "agent node7" or "cli".
func (id Identity) String() string {
	if id.Node == "" {
		return string(id.Role)
	}
	return string(id.Role) + " " + id.Node
}

// DNSName returns the name that identifies the holder in a certificate:
// NODE.server.loom, NODE.agent.loom or cli.loom. A client that dials one
// particular server or agent verifies this name.
func (id Identity) DNSName() string {
	if id.Role == RoleCLI {
		return CLIDNSName
	}
	return id.Node + "." + string(id.Role) + "." + Domain
}

// Check returns an error, naming the field, unless id is a role Loom knows
// with a valid node name (servers and agents) or none (CLI).
func (id Identity) Check() error {
	switch id.Role {
	case RoleServer, RoleAgent:
		if err := checkNodeName(id.Node); err != nil {
			return fmt.Errorf("pki: %s node name %q: %w", id.Role, id.Node, err)
		}
	case RoleCLI:
		if id.Node != "" {
			return fmt.Errorf("pki: cli certificate takes no node name, got %q", id.Node)
		}
	default:
		return fmt.Errorf("pki: role %q: want server, agent or cli", id.Role)
	}
	return nil
}

// checkNodeName accepts host names: dot-separated labels of letters,
// digits and inner hyphens, 63 characters a label, 253 in all.
func checkNodeName(n string) error {
	if n == "" {
		return errors.New("empty")
	}
	if len(n) > 253 {
		return errors.New("longer than 253 characters")
	}
	for label := range strings.SplitSeq(n, ".") {
		if label == "" {
			return errors.New("empty label (two dots, or a dot at an end)")
		}
		if len(label) > 63 {
			return fmt.Errorf("label %q is longer than 63 characters", label)
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Errorf("label %q starts or ends with a hyphen", label)
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return fmt.Errorf("character %q: use letters, digits, hyphens and dots", c)
			}
		}
	}
	return nil
}

// IdentityOf reads the holder's identity from cert's DNS names. Names
// outside the loom domain (localhost, a host's real name) are ignored.
// Every name inside it must be a role name, and together they must name
// exactly one role and, for a server or agent, exactly one node; anything
// else is ErrBadIdentity. IdentityOf does not verify the certificate:
// callers pass one the CA has verified.
func IdentityOf(cert *x509.Certificate) (Identity, error) {
	var (
		roles []Role
		nodes []string
	)
	for _, name := range cert.DNSNames {
		lower := strings.ToLower(name)
		if lower != Domain && !strings.HasSuffix(lower, "."+Domain) {
			continue
		}
		role, node, ok := parseRoleName(name)
		if !ok {
			return Identity{}, fmt.Errorf("%w: %q is in the %s domain but is no role name", ErrBadIdentity, name, Domain)
		}
		if !slices.Contains(roles, role) {
			roles = append(roles, role)
		}
		if node != "" && !slices.Contains(nodes, node) {
			nodes = append(nodes, node)
		}
	}
	switch {
	case len(roles) == 0:
		return Identity{}, fmt.Errorf("%w: no role name among %q", ErrBadIdentity, cert.DNSNames)
	case len(roles) > 1:
		return Identity{}, fmt.Errorf("%w: names several roles %q", ErrBadIdentity, roles)
	case len(nodes) > 1:
		return Identity{}, fmt.Errorf("%w: names several nodes %q", ErrBadIdentity, nodes)
	}
	id := Identity{Role: roles[0]}
	if len(nodes) == 1 {
		id.Node = nodes[0]
	}
	if id.Role != RoleCLI && id.Node == "" {
		return Identity{}, fmt.Errorf("%w: %s certificate names no node (want NODE.%s.%s)", ErrBadIdentity, id.Role, id.Role, Domain)
	}
	if err := id.Check(); err != nil {
		return Identity{}, fmt.Errorf("%w: %v", ErrBadIdentity, err)
	}
	return id, nil
}

// parseRoleName splits a name in the loom domain into role and node.
func parseRoleName(name string) (Role, string, bool) {
	lower := strings.ToLower(name)
	switch lower {
	case ServerDNSName:
		return RoleServer, "", true
	case CLIDNSName:
		return RoleCLI, "", true
	}
	for _, r := range []Role{RoleServer, RoleAgent} {
		suffix := "." + string(r) + "." + Domain
		if strings.HasSuffix(lower, suffix) {
			return r, name[:len(name)-len(suffix)], true
		}
	}
	return "", "", false
}

// PeerIdentity returns the identity of the peer of a finished handshake.
// The peer's certificate must have been verified against the CA (a config
// from this package does that); otherwise it is ErrNoCertificate.
func PeerIdentity(cs tls.ConnectionState) (Identity, error) {
	if len(cs.VerifiedChains) == 0 || len(cs.PeerCertificates) == 0 {
		return Identity{}, ErrNoCertificate
	}
	return IdentityOf(cs.PeerCertificates[0])
}

func roleList(roles []Role) string {
	s := make([]string, len(roles))
	for i, r := range roles {
		s[i] = string(r)
	}
	return strings.Join(s, " or ")
}
