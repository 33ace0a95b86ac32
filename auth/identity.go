package auth

import (
	"context"
	"fmt"
)

// How an Identity was proven: the values of Identity.Method.
const (
	// MethodMunge means a MUNGE credential decoded by this host's munged.
	MethodMunge = "munge"
	// MethodLocal means Unix peer credentials (SO_PEERCRED) on a local
	// socket.
	MethodLocal = "local"
	// MethodForwarded means forwarding metadata set by another server,
	// believed because Config.TrustForwarded vouched for the peer.
	MethodForwarded = "forwarded"
)

// Identity is the user a call comes from, as proven by the connection.
// The zero Identity is no one: it has no Method, and Policy grants it
// nothing even though its UID is 0.
type Identity struct {
	UID, GID uint32
	// Method says how the identity was proven; see the Method constants.
	Method string
	// Local is true when the caller was proven by peer credentials on
	// the host of the daemon that accepted the call, or of the server
	// that forwarded it. Policy counts root as an operator only then.
	Local bool
}

// Valid reports whether id was proven at all.
func (id Identity) Valid() bool { return id.Method != "" }

// String returns "uid 1000 gid 1000 (munge)", with ", local" for a Local
// identity proven by forwarding.
func (id Identity) String() string {
	if !id.Valid() {
		return "no identity"
	}
	local := ""
	if id.Local && id.Method != MethodLocal {
		local = ", local"
	}
	return fmt.Sprintf("uid %d gid %d (%s%s)", id.UID, id.GID, id.Method, local)
}

type identityKey struct{}

// NewContext returns ctx carrying id. The server interceptors call it; tests
// of handlers may too.
func NewContext(ctx context.Context, id Identity) context.Context {
	return context.WithValue(ctx, identityKey{}, id)
}

// FromContext returns the caller's identity that the interceptors put in
// ctx, and false when there is none (an exempt method, or a context that
// did not come through them).
func FromContext(ctx context.Context) (Identity, bool) {
	id, ok := ctx.Value(identityKey{}).(Identity)
	return id, ok && id.Valid()
}
