// Package pkirpc checks the certificate of a gRPC call's caller against
// the roles of package pki. It is apart from pki so that the CLI, which
// links pki for its TLS configuration, does not link gRPC.
package pkirpc

import (
	"context"
	"errors"
	"slices"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/loomhpc/loom/pki"
)

// PeerIdentityFromContext returns the identity of the caller of a gRPC
// method, from the TLS connection the call came on.
func PeerIdentityFromContext(ctx context.Context) (pki.Identity, error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return pki.Identity{}, pki.ErrNotTLS
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok {
		return pki.Identity{}, pki.ErrNotTLS
	}
	return pki.PeerIdentity(info.State)
}

// RequireRole returns the caller's identity if it holds one of roles.
// Otherwise it returns a gRPC status error: Unauthenticated when the call
// came without a verified certificate or with one that names no single
// role, PermissionDenied when the role is not one of roles.
func RequireRole(ctx context.Context, roles ...pki.Role) (pki.Identity, error) {
	id, err := PeerIdentityFromContext(ctx)
	if err != nil {
		return pki.Identity{}, status.Error(codes.Unauthenticated, unauthenticated(err, roles))
	}
	if !slices.Contains(roles, id.Role) {
		return pki.Identity{}, status.Errorf(codes.PermissionDenied, "%s may not call this method: it needs a certificate of role %s", id, roleList(roles))
	}
	return id, nil
}

// RequireAgent returns nil if the caller holds the agent certificate of
// node, and otherwise a gRPC status error (as RequireRole's): an agent may
// register and report for its own node only.
func RequireAgent(ctx context.Context, node string) error {
	id, err := RequireRole(ctx, pki.RoleAgent)
	if err != nil {
		return err
	}
	if id.Node != node {
		return status.Errorf(codes.PermissionDenied, "agent certificate of node %q may not act for node %q", id.Node, node)
	}
	return nil
}

func unauthenticated(err error, roles []pki.Role) string {
	want := "a certificate of role " + roleList(roles)
	switch {
	case errors.Is(err, pki.ErrNotTLS):
		return "connection is not TLS: this method needs " + want
	case errors.Is(err, pki.ErrNoCertificate):
		return "no client certificate: this method needs " + want
	}
	return err.Error()
}

func roleList(roles []pki.Role) string {
	s := make([]string, len(roles))
	for i, r := range roles {
		s[i] = string(r)
	}
	return strings.Join(s, " or ")
}
