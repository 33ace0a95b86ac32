package auth

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/loomhpc/loom/auth/callcred"
	"github.com/loomhpc/loom/auth/munge"
)

// Metadata keys the package reads and writes.
const (
	// MungeMetadataKey carries the caller's MUNGE credential.
	MungeMetadataKey = callcred.MetadataKey
	// ForwardedUIDKey and ForwardedGIDKey carry the identity of the user
	// whose call a server forwards to the leader.
	ForwardedUIDKey = "loom-forwarded-uid"
	ForwardedGIDKey = "loom-forwarded-gid"
	// ForwardedLocalKey is "1" when the forwarded user was Local to the
	// forwarding server.
	ForwardedLocalKey = "loom-forwarded-local"
)

// Mode is how a server's users prove who they are: the auth setting of
// the configuration.
type Mode string

const (
	// ModeMunge takes the caller from a MUNGE credential in each call:
	// the production default.
	ModeMunge Mode = "munge"
	// ModeLocal takes the caller from peer credentials on the server's
	// Unix socket only; users cannot call over TCP. loom dev uses it.
	ModeLocal Mode = "local"
)

// Decoder checks MUNGE credentials; munge.Client is the real one.
type Decoder interface {
	Decode(cred string) (munge.Credential, error)
}

// Config says how an Authenticator finds the caller of each call.
type Config struct {
	Mode Mode
	// Munge decodes credentials in ModeMunge. Nil means munge.Client{},
	// the munged on munge.DefaultSocket.
	Munge Decoder
	// LocalSocket is the path of the server's Unix socket, named in
	// refusals so that users learn where to connect. Optional.
	LocalSocket string
	// TrustForwarded reports whether the peer of a call is another server
	// (proven by its certificate), whose forwarding metadata names the
	// caller. Nil trusts no one: forwarding metadata is then refused.
	TrustForwarded func(ctx context.Context) bool
	// Exempt lists full method names ("/loom.v1.AgentService/Register")
	// that carry no user: calls between daemons, authenticated by their
	// certificates. They pass with no Identity in their context.
	Exempt []string
}

// Authenticator finds the caller of each gRPC call and puts its Identity
// in the call's context, or refuses the call.
type Authenticator struct {
	mode           Mode
	munge          Decoder
	localSocket    string
	trustForwarded func(ctx context.Context) bool
	exempt         map[string]bool
}

// NewAuthenticator checks cfg and returns its Authenticator. In ModeMunge
// with no Config.Munge it loads libmunge, so a server started with
// auth = "munge" on a host without munge fails at start with
// munge.ErrNoLibrary.
func NewAuthenticator(cfg Config) (*Authenticator, error) {
	a := &Authenticator{
		mode:           cfg.Mode,
		munge:          cfg.Munge,
		localSocket:    cfg.LocalSocket,
		trustForwarded: cfg.TrustForwarded,
		exempt:         make(map[string]bool, len(cfg.Exempt)),
	}
	switch cfg.Mode {
	case ModeMunge:
		if a.munge == nil {
			if err := munge.Load(); err != nil {
				return nil, fmt.Errorf("auth: mode %q: %w", cfg.Mode, err)
			}
			a.munge = munge.Client{}
		}
	case ModeLocal:
	default:
		return nil, fmt.Errorf("auth: mode %q is not %q or %q", cfg.Mode, ModeMunge, ModeLocal)
	}
	for i, m := range cfg.Exempt {
		if !strings.HasPrefix(m, "/") || strings.Count(m, "/") != 2 || strings.HasSuffix(m, "/") {
			return nil, fmt.Errorf("auth: exempt[%d] %q is not a full method name like /loom.v1.JobService/Submit", i, m)
		}
		a.exempt[m] = true
	}
	return a, nil
}

// UnaryInterceptor returns the interceptor for grpc.ChainUnaryInterceptor.
func (a *Authenticator) UnaryInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		ctx, err := a.authenticate(ctx, info.FullMethod)
		if err != nil {
			return nil, err
		}
		return handler(ctx, req)
	}
}

// StreamInterceptor returns the interceptor for grpc.ChainStreamInterceptor.
func (a *Authenticator) StreamInterceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		ctx, err := a.authenticate(ss.Context(), info.FullMethod)
		if err != nil {
			return err
		}
		return handler(srv, WithContext(ss, ctx))
	}
}

// WithContext returns ss with ctx, which carries the caller, as its
// context: what a stream interceptor hands the handler once it has
// proved who is calling.
func WithContext(ss grpc.ServerStream, ctx context.Context) grpc.ServerStream {
	return identityStream{ServerStream: ss, ctx: ctx}
}

// identityStream is a server stream whose context carries the caller.
type identityStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s identityStream) Context() context.Context { return s.ctx }

// authenticate returns ctx with the caller of fullMethod, ctx itself for an
// exempt method, or a status error.
func (a *Authenticator) authenticate(ctx context.Context, fullMethod string) (context.Context, error) {
	if a.exempt[fullMethod] {
		return ctx, nil
	}
	id, err := a.Identify(ctx, fullMethod)
	if err != nil {
		return nil, err
	}
	return NewContext(ctx, id), nil
}

// Identify returns the caller of a call to fullMethod whose server-side
// context is ctx, or a gRPC status error saying why there is none and what
// to do. It does not look at Config.Exempt. The sources, in order:
// forwarding metadata (only from a peer that Config.TrustForwarded
// vouches for, refused from anyone else), peer credentials of a
// PeerCredentials connection (in either mode), and in ModeMunge the MUNGE
// credential bound to fullMethod.
func (a *Authenticator) Identify(ctx context.Context, fullMethod string) (Identity, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	if len(md.Get(ForwardedUIDKey)) > 0 || len(md.Get(ForwardedGIDKey)) > 0 || len(md.Get(ForwardedLocalKey)) > 0 {
		if a.trustForwarded == nil || !a.trustForwarded(ctx) {
			return Identity{}, status.Errorf(codes.PermissionDenied,
				"%s: metadata %s is accepted only from another server of the cluster (a server certificate); clients must not set it",
				fullMethod, ForwardedUIDKey)
		}
		return forwardedIdentity(md, fullMethod)
	}
	if p, ok := peer.FromContext(ctx); ok {
		if info, ok := p.AuthInfo.(PeerCredInfo); ok {
			return Identity{UID: info.UID, GID: info.GID, Method: MethodLocal, Local: true}, nil
		}
	}
	if a.mode == ModeLocal {
		where := "the server's local Unix socket"
		if a.localSocket != "" {
			where = "the Unix socket " + a.localSocket
		}
		return Identity{}, status.Errorf(codes.Unauthenticated,
			"%s: no caller identity: this server uses auth = %q and takes calls from users only on %s; connect there from the server's host",
			fullMethod, ModeLocal, where)
	}
	return a.mungeIdentity(md, fullMethod)
}

// mungeIdentity checks the call's MUNGE credential.
func (a *Authenticator) mungeIdentity(md metadata.MD, fullMethod string) (Identity, error) {
	creds := md.Get(MungeMetadataKey)
	switch len(creds) {
	case 0:
		return Identity{}, status.Errorf(codes.Unauthenticated,
			"%s: no caller identity: this server uses auth = %q and the call has no MUNGE credential (metadata %s); use a loom client configured with auth = %q on a host whose munged shares the cluster's key",
			fullMethod, ModeMunge, MungeMetadataKey, ModeMunge)
	case 1:
	default:
		return Identity{}, status.Errorf(codes.Unauthenticated,
			"%s: the call has %d MUNGE credentials (metadata %s), want one", fullMethod, len(creds), MungeMetadataKey)
	}
	cred, err := a.munge.Decode(creds[0])
	if err != nil {
		return Identity{}, mungeStatus(fullMethod, err)
	}
	if got := string(cred.Payload); got != bindPayload(fullMethod) {
		return Identity{}, status.Errorf(codes.Unauthenticated,
			"%s: MUNGE credential of uid %d was made for %q, not this call: a credential is bound to one call", fullMethod, cred.UID, got)
	}
	return Identity{UID: cred.UID, GID: cred.GID, Method: MethodMunge}, nil
}

// mungeStatus maps a Decode error to the status the caller sees.
func mungeStatus(fullMethod string, err error) error {
	switch {
	case errors.Is(err, munge.ErrNoLibrary), errors.Is(err, munge.ErrDaemon):
		return status.Errorf(codes.Unavailable, "%s: this server cannot check MUNGE credentials: %v", fullMethod, err)
	case errors.Is(err, munge.ErrReplayed):
		return status.Errorf(codes.Unauthenticated, "%s: MUNGE credential refused: %v: each call needs a fresh credential", fullMethod, err)
	case errors.Is(err, munge.ErrExpired), errors.Is(err, munge.ErrRewound):
		return status.Errorf(codes.Unauthenticated, "%s: MUNGE credential refused: %v: check that the clocks of the client's host and this server agree (NTP)", fullMethod, err)
	case errors.Is(err, munge.ErrInvalid):
		return status.Errorf(codes.Unauthenticated, "%s: MUNGE credential refused: %v: the client's munged must use this cluster's key", fullMethod, err)
	}
	return status.Errorf(codes.Unavailable, "%s: this server cannot check MUNGE credentials: %v", fullMethod, err)
}

// forwardedIdentity reads the identity a trusted server forwarded.
func forwardedIdentity(md metadata.MD, fullMethod string) (Identity, error) {
	uid, err := forwardedID(md, ForwardedUIDKey, fullMethod)
	if err != nil {
		return Identity{}, err
	}
	gid, err := forwardedID(md, ForwardedGIDKey, fullMethod)
	if err != nil {
		return Identity{}, err
	}
	id := Identity{UID: uid, GID: gid, Method: MethodForwarded}
	switch v := md.Get(ForwardedLocalKey); {
	case len(v) == 0:
	case len(v) == 1 && v[0] == "1":
		id.Local = true
	default:
		return Identity{}, status.Errorf(codes.Unauthenticated, "%s: metadata %s = %q, want one value \"1\" or none", fullMethod, ForwardedLocalKey, v)
	}
	return id, nil
}

func forwardedID(md metadata.MD, key, fullMethod string) (uint32, error) {
	v := md.Get(key)
	if len(v) != 1 {
		return 0, status.Errorf(codes.Unauthenticated, "%s: forwarded call has %d values of metadata %s, want one", fullMethod, len(v), key)
	}
	n, err := strconv.ParseUint(v[0], 10, 32)
	if err != nil {
		return 0, status.Errorf(codes.Unauthenticated, "%s: metadata %s = %q is not a uid or gid", fullMethod, key, v[0])
	}
	return uint32(n), nil
}

// bindPayload is the MUNGE payload that binds a credential to a call of
// fullMethod, so that a credential seen by one server cannot serve as
// another call.
func bindPayload(fullMethod string) string { return callcred.Payload(fullMethod) }
