package auth

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/loomhpc/loom/auth/munge"
)

type trustKey struct{}

// trustIfMarked is a Config.TrustForwarded that vouches for contexts the
// test marked, as the wiring vouches for peers with a server certificate.
func trustIfMarked(ctx context.Context) bool { return ctx.Value(trustKey{}) != nil }

func TestIdentify(t *testing.T) {
	tcpPeer := &peer.Peer{Addr: &net.TCPAddr{IP: net.IPv4(10, 0, 0, 7), Port: 40000}}
	localPeer := &peer.Peer{Addr: &net.UnixAddr{Name: "@", Net: "unix"}, AuthInfo: PeerCredInfo{UID: 1001, GID: 1002, PID: 42}}
	fake := newFakeMunge(1000, 100)
	spent := fake.mustEncode(checkMethod)
	if _, err := fake.Decode(spent); err != nil {
		t.Fatal(err)
	}
	incoming := func(p *peer.Peer, kv ...string) context.Context {
		return metadata.NewIncomingContext(peer.NewContext(context.Background(), p), metadata.Pairs(kv...))
	}
	trusted := func(ctx context.Context) context.Context { return context.WithValue(ctx, trustKey{}, true) }
	for _, tc := range []struct {
		name      string
		mode      Mode
		trust     func(context.Context) bool
		decodeErr error
		ctx       context.Context
		want      Identity
		wantCode  codes.Code
		wantMsg   string
	}{
		{name: "munge credential", mode: ModeMunge,
			ctx:  incoming(tcpPeer, MungeMetadataKey, fake.mustEncode(checkMethod)),
			want: Identity{UID: 1000, GID: 100, Method: MethodMunge}},
		{name: "munge without credential", mode: ModeMunge, ctx: incoming(tcpPeer),
			wantCode: codes.Unauthenticated, wantMsg: `auth = "munge"`},
		{name: "munge credential for another method", mode: ModeMunge,
			ctx:      incoming(tcpPeer, MungeMetadataKey, fake.mustEncode(watchMethod)),
			wantCode: codes.Unauthenticated, wantMsg: "bound to one call"},
		{name: "munge credential replayed", mode: ModeMunge,
			ctx:      incoming(tcpPeer, MungeMetadataKey, spent),
			wantCode: codes.Unauthenticated, wantMsg: "fresh credential"},
		{name: "munge credential unknown", mode: ModeMunge,
			ctx:      incoming(tcpPeer, MungeMetadataKey, "MUNGE:forged:"),
			wantCode: codes.Unauthenticated, wantMsg: "cluster's key"},
		{name: "two munge credentials", mode: ModeMunge,
			ctx:      incoming(tcpPeer, MungeMetadataKey, fake.mustEncode(checkMethod), MungeMetadataKey, fake.mustEncode(checkMethod)),
			wantCode: codes.Unauthenticated, wantMsg: "want one"},
		{name: "munge credential expired", mode: ModeMunge, decodeErr: fmt.Errorf("x: %w", munge.ErrExpired),
			ctx:      incoming(tcpPeer, MungeMetadataKey, fake.mustEncode(checkMethod)),
			wantCode: codes.Unauthenticated, wantMsg: "NTP"},
		{name: "munged down on the server", mode: ModeMunge, decodeErr: fmt.Errorf("x: %w", munge.ErrDaemon),
			ctx:      incoming(tcpPeer, MungeMetadataKey, fake.mustEncode(checkMethod)),
			wantCode: codes.Unavailable, wantMsg: "cannot check MUNGE"},
		{name: "munge mode takes peer credentials", mode: ModeMunge, ctx: incoming(localPeer),
			want: Identity{UID: 1001, GID: 1002, Method: MethodLocal, Local: true}},
		{name: "local peer credentials", mode: ModeLocal, ctx: incoming(localPeer),
			want: Identity{UID: 1001, GID: 1002, Method: MethodLocal, Local: true}},
		{name: "local mode over TCP", mode: ModeLocal, ctx: incoming(tcpPeer),
			wantCode: codes.Unauthenticated, wantMsg: "/run/loom/loom.sock"},
		{name: "local mode ignores munge", mode: ModeLocal,
			ctx:      incoming(tcpPeer, MungeMetadataKey, fake.mustEncode(checkMethod)),
			wantCode: codes.Unauthenticated, wantMsg: `auth = "local"`},
		{name: "forwarded with no hook", mode: ModeMunge,
			ctx:      trusted(incoming(tcpPeer, ForwardedUIDKey, "0", ForwardedGIDKey, "0")),
			wantCode: codes.PermissionDenied, wantMsg: "server certificate"},
		{name: "forwarded from untrusted peer", mode: ModeMunge, trust: trustIfMarked,
			ctx:      incoming(tcpPeer, ForwardedUIDKey, "0", ForwardedGIDKey, "0", MungeMetadataKey, fake.mustEncode(checkMethod)),
			wantCode: codes.PermissionDenied, wantMsg: ForwardedUIDKey},
		{name: "forwarded local flag from untrusted peer", mode: ModeLocal, trust: trustIfMarked,
			ctx:      incoming(localPeer, ForwardedLocalKey, "1"),
			wantCode: codes.PermissionDenied},
		{name: "forwarded from server", mode: ModeMunge, trust: trustIfMarked,
			ctx:  trusted(incoming(tcpPeer, ForwardedUIDKey, "1000", ForwardedGIDKey, "100")),
			want: Identity{UID: 1000, GID: 100, Method: MethodForwarded}},
		{name: "forwarded local root", mode: ModeLocal, trust: trustIfMarked,
			ctx:  trusted(incoming(tcpPeer, ForwardedUIDKey, "0", ForwardedGIDKey, "0", ForwardedLocalKey, "1")),
			want: Identity{UID: 0, GID: 0, Method: MethodForwarded, Local: true}},
		{name: "forwarded without gid", mode: ModeMunge, trust: trustIfMarked,
			ctx:      trusted(incoming(tcpPeer, ForwardedUIDKey, "1000")),
			wantCode: codes.Unauthenticated, wantMsg: ForwardedGIDKey},
		{name: "forwarded uid not a number", mode: ModeMunge, trust: trustIfMarked,
			ctx:      trusted(incoming(tcpPeer, ForwardedUIDKey, "alice", ForwardedGIDKey, "100")),
			wantCode: codes.Unauthenticated, wantMsg: `"alice"`},
		{name: "forwarded local flag not 1", mode: ModeMunge, trust: trustIfMarked,
			ctx:      trusted(incoming(tcpPeer, ForwardedUIDKey, "0", ForwardedGIDKey, "0", ForwardedLocalKey, "yes")),
			wantCode: codes.Unauthenticated, wantMsg: ForwardedLocalKey},
		{name: "server peer without forwarding", mode: ModeMunge, trust: trustIfMarked,
			ctx:      trusted(incoming(tcpPeer)),
			wantCode: codes.Unauthenticated, wantMsg: MungeMetadataKey},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fake.err = tc.decodeErr
			a, err := NewAuthenticator(Config{Mode: tc.mode, Munge: fake, LocalSocket: "/run/loom/loom.sock", TrustForwarded: tc.trust})
			if err != nil {
				t.Fatalf("NewAuthenticator: %v", err)
			}
			got, err := a.Identify(tc.ctx, checkMethod)
			if code := status.Code(err); code != tc.wantCode {
				t.Fatalf("Identify() = %v, %v; want code %v", got, err, tc.wantCode)
			}
			if !strings.Contains(status.Convert(err).Message(), tc.wantMsg) {
				t.Errorf("Identify() error %q does not contain %q", status.Convert(err).Message(), tc.wantMsg)
			}
			if got != tc.want {
				t.Errorf("Identify() = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestNewAuthenticatorRefuses(t *testing.T) {
	fake := newFakeMunge(1, 1)
	for _, tc := range []struct {
		name    string
		cfg     Config
		wantMsg string
	}{
		{"no mode", Config{}, `mode "" is not`},
		{"unknown mode", Config{Mode: "kerberos"}, `mode "kerberos"`},
		{"exempt without slash", Config{Mode: ModeLocal, Exempt: []string{checkMethod, "Health/Check"}}, `exempt[1] "Health/Check"`},
		{"exempt service only", Config{Mode: ModeMunge, Munge: fake, Exempt: []string{"/grpc.health.v1.Health/"}}, `exempt[0]`},
		{"exempt too deep", Config{Mode: ModeMunge, Munge: fake, Exempt: []string{"/a/b/c"}}, `exempt[0]`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewAuthenticator(tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.wantMsg) {
				t.Errorf("NewAuthenticator(%+v) error = %v, want one containing %q", tc.cfg, err, tc.wantMsg)
			}
		})
	}
}

func TestIdentityZeroIsNoOne(t *testing.T) {
	if _, ok := FromContext(context.Background()); ok {
		t.Error("FromContext(empty context) ok = true")
	}
	if _, ok := FromContext(NewContext(context.Background(), Identity{})); ok {
		t.Error("FromContext(NewContext(zero Identity)) ok = true, want false: the zero Identity is no one")
	}
	id := Identity{UID: 5, GID: 6, Method: MethodLocal, Local: true}
	got, ok := FromContext(NewContext(context.Background(), id))
	if !ok || got != id {
		t.Errorf("FromContext(NewContext(%v)) = %v, %v", id, got, ok)
	}
	for _, tc := range []struct {
		id   Identity
		want string
	}{
		{id, "uid 5 gid 6 (local)"},
		{Identity{Method: MethodForwarded, Local: true}, "uid 0 gid 0 (forwarded, local)"},
		{Identity{UID: 1000, GID: 100, Method: MethodMunge}, "uid 1000 gid 100 (munge)"},
		{Identity{}, "no identity"},
	} {
		if got := tc.id.String(); got != tc.want {
			t.Errorf("%#v.String() = %q, want %q", tc.id, got, tc.want)
		}
	}
}
