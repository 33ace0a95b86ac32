package gossip

import (
	"errors"
	"fmt"
	"log/slog"
	"testing"
	"time"
)

func start(t *testing.T, name string, keys ...[]byte) *Gossip {
	t.Helper()
	g, err := New(Config{
		Name: name, BindAddr: "127.0.0.1:0", Keys: keys,
		Meta:   Meta{Role: RoleAgent, Name: name, RPCAddr: "127.0.0.1:7073", Version: "test"},
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	return g
}

func key(t *testing.T) []byte {
	t.Helper()
	s, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	k, err := DecodeKey(s)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// waitEvent returns the first event of type want about member name.
func waitEvent(t *testing.T, g *Gossip, want EventType, name string) Event {
	t.Helper()
	timeout := time.After(15 * time.Second)
	for {
		select {
		case ev := <-g.Events():
			if ev.Type == want && ev.Member.Name == name {
				return ev
			}
		case <-timeout:
			t.Fatalf("no %s event for %s", want, name)
		}
	}
}

func TestJoinMetaAndDeath(t *testing.T) {
	k := key(t)
	a, b, c := start(t, "a", k), start(t, "b", k), start(t, "c", k)
	for _, g := range []*Gossip{b, c} {
		if _, err := g.Join([]string{a.Addr()}); err != nil {
			t.Fatal(err)
		}
	}
	ev := waitEvent(t, a, MemberJoin, "c")
	if ev.Member.Meta != (Meta{Role: RoleAgent, Name: "c", RPCAddr: "127.0.0.1:7073", Version: "test"}) || !ev.Member.Alive {
		t.Fatalf("join event for c = %+v, want its metadata and alive", ev.Member)
	}
	c.Close() // a crash: no leave message
	if ev := waitEvent(t, a, MemberLeave, "c"); ev.Member.Alive {
		t.Fatalf("leave event says c is alive")
	}
	alive := 0
	for _, m := range a.Members() {
		if m.Alive {
			alive++
		}
	}
	if alive != 2 {
		t.Fatalf("a sees %d alive members after c died, want 2", alive)
	}
}

func TestWrongKeyCannotJoin(t *testing.T) {
	a := start(t, "a", key(t))
	intruder := start(t, "intruder", key(t))
	_, err := intruder.Join([]string{a.Addr()})
	if !errors.Is(err, ErrWrongKey) {
		t.Fatalf("join with another key: err = %v, want ErrWrongKey", err)
	}
	plain := start(t, "plain")
	if _, err := plain.Join([]string{a.Addr()}); err == nil {
		t.Fatal("an unencrypted member joined an encrypted pool")
	}
}

// TestKeyRotation walks the rotation: members that have installed the new
// key beside the old one still talk to members on the old key alone, and
// once they all have both, those already encrypting with the new key talk
// to those not yet switched.
func TestKeyRotation(t *testing.T) {
	oldKey, newKey := key(t), key(t)
	a := start(t, "a", oldKey)
	b := start(t, "b", oldKey, newKey) // step 1: new key installed, old still primary
	if _, err := b.Join([]string{a.Addr()}); err != nil {
		t.Fatalf("member with the new key installed could not join one on the old key: %v", err)
	}
	c := start(t, "c", newKey, oldKey) // step 2: new key primary
	if _, err := c.Join([]string{b.Addr()}); err != nil {
		t.Fatalf("member encrypting with the new key could not join one that has it installed: %v", err)
	}
	waitEvent(t, b, MemberJoin, "c")
}

func TestDecodeKey(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want error
	}{
		{"c2hvcnQ=", fmt.Errorf("5 bytes")},
		{"!!!", fmt.Errorf("not base64")},
	} {
		if _, err := DecodeKey(tt.in); err == nil {
			t.Errorf("DecodeKey(%q) = nil error, want one mentioning %v", tt.in, tt.want)
		}
	}
}
