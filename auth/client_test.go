package auth

import (
	"context"
	"testing"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
)

func TestMungeCredentialsBindMethod(t *testing.T) {
	fake := newFakeMunge(1000, 100)
	c := MungeCredentials{Munge: fake}
	ctx := credentials.NewContextWithRequestInfo(context.Background(), credentials.RequestInfo{Method: checkMethod})
	md, err := c.GetRequestMetadata(ctx, "https://server.loom/grpc.health.v1.Health")
	if err != nil {
		t.Fatalf("GetRequestMetadata: %v", err)
	}
	got, err := fake.Decode(md[MungeMetadataKey])
	if err != nil {
		t.Fatalf("Decode(%q): %v", md[MungeMetadataKey], err)
	}
	if string(got.Payload) != bindPayload(checkMethod) {
		t.Errorf("credential payload = %q, want %q", got.Payload, bindPayload(checkMethod))
	}
	if _, err := c.GetRequestMetadata(context.Background(), "https://server.loom/x"); err == nil {
		t.Error("GetRequestMetadata without a method in the context succeeded, want an error")
	}
	if !c.RequireTransportSecurity() || (MungeCredentials{AllowPlaintext: true}).RequireTransportSecurity() {
		t.Error("RequireTransportSecurity should be true unless AllowPlaintext")
	}
}

func TestForwardContext(t *testing.T) {
	for _, tc := range []struct {
		id   Identity
		want metadata.MD
	}{
		{Identity{UID: 1000, GID: 100, Method: MethodMunge},
			metadata.Pairs("other", "kept", ForwardedUIDKey, "1000", ForwardedGIDKey, "100")},
		{Identity{UID: 0, GID: 0, Method: MethodLocal, Local: true},
			metadata.Pairs("other", "kept", ForwardedUIDKey, "0", ForwardedGIDKey, "0", ForwardedLocalKey, "1")},
	} {
		// The outgoing context as a server might build it from the user's
		// call: a spent credential and a stale forwarding flag.
		ctx := metadata.NewOutgoingContext(context.Background(),
			metadata.Pairs("other", "kept", MungeMetadataKey, "spent", ForwardedLocalKey, "1"))
		got, _ := metadata.FromOutgoingContext(ForwardContext(ctx, tc.id))
		if len(got) != len(tc.want) {
			t.Errorf("ForwardContext(%v) metadata = %v, want %v", tc.id, got, tc.want)
			continue
		}
		for k, v := range tc.want {
			if g := got.Get(k); len(g) != 1 || g[0] != v[0] {
				t.Errorf("ForwardContext(%v) metadata %s = %q, want %q", tc.id, k, g, v)
			}
		}
	}
}
