package auth

import (
	"context"
	"fmt"
	"strconv"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"

	"github.com/loomhpc/loom/auth/munge"
)

// Encoder makes MUNGE credentials; munge.Client is the real one.
type Encoder interface {
	Encode(payload []byte) (string, error)
}

// MungeCredentials is the client side of ModeMunge: per-call credentials
// (grpc.WithPerRPCCredentials) that attach a fresh MUNGE credential to
// every call, bound to the call's full method name. Credentials are
// single-use, so a retried call gets a new one.
type MungeCredentials struct {
	// Munge makes the credentials; nil means munge.Client{}, the munged
	// on munge.DefaultSocket.
	Munge Encoder
	// AllowPlaintext lets credentials travel on connections without TLS,
	// for clusters configured with tls = false. Otherwise gRPC refuses
	// such calls, since whoever reads a credential first can use it.
	AllowPlaintext bool
}

// GetRequestMetadata returns the call's credential under MungeMetadataKey.
// gRPC puts the call's method in ctx (credentials.RequestInfo); the uri
// names only the service.
func (c MungeCredentials) GetRequestMetadata(ctx context.Context, _ ...string) (map[string]string, error) {
	ri, ok := credentials.RequestInfoFromContext(ctx)
	if !ok || ri.Method == "" {
		return nil, fmt.Errorf("auth: MUNGE credential: no gRPC method in the call's context to bind it to")
	}
	enc := c.Munge
	if enc == nil {
		enc = munge.Client{}
	}
	cred, err := enc.Encode([]byte(bindPayload(ri.Method)))
	if err != nil {
		return nil, fmt.Errorf("auth: MUNGE credential for %s: %w", ri.Method, err)
	}
	return map[string]string{MungeMetadataKey: cred}, nil
}

// RequireTransportSecurity reports whether calls need TLS or a local
// socket: unless AllowPlaintext.
func (c MungeCredentials) RequireTransportSecurity() bool { return !c.AllowPlaintext }

// ForwardContext returns an outgoing context for a server that forwards a
// user's call to the leader: it names id in the forwarding metadata, which
// the leader believes because Config.TrustForwarded vouches for the
// forwarding server, and drops any MUNGE credential copied from the
// user's call (it was spent on this server). Forward only an identity that
// this server's interceptors proved.
func ForwardContext(ctx context.Context, id Identity) context.Context {
	md, _ := metadata.FromOutgoingContext(ctx)
	md = md.Copy()
	md.Delete(MungeMetadataKey)
	md.Set(ForwardedUIDKey, strconv.FormatUint(uint64(id.UID), 10))
	md.Set(ForwardedGIDKey, strconv.FormatUint(uint64(id.GID), 10))
	md.Delete(ForwardedLocalKey)
	if id.Local {
		md.Set(ForwardedLocalKey, "1")
	}
	return metadata.NewOutgoingContext(ctx, md)
}
