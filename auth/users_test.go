package auth

import (
	"errors"
	"slices"
	"testing"
)

func TestLookupUser(t *testing.T) {
	root, err := LookupUser(0)
	if err != nil {
		t.Fatalf("LookupUser(0): %v", err)
	}
	if root.Name != "root" || root.UID != 0 || root.GID != 0 || !slices.Contains(root.Groups, 0) {
		t.Errorf("LookupUser(0) = %+v, want root, gid 0, in group 0", root)
	}
	nobody, err := LookupUser(65534)
	if err != nil {
		t.Fatalf("LookupUser(65534): %v", err)
	}
	if nobody.Name != "nobody" || nobody.UID != 65534 {
		t.Errorf("LookupUser(65534) = %+v, want nobody", nobody)
	}
	const unknown = 3999999991
	if u, err := LookupUser(unknown); !errors.Is(err, ErrUnknownUser) {
		t.Errorf("LookupUser(%d) = %+v, %v; want ErrUnknownUser", unknown, u, err)
	}
}

func TestNSSLookupGroup(t *testing.T) {
	if gid, err := (NSS{}).LookupGroup("root"); err != nil || gid != 0 {
		t.Errorf("LookupGroup(root) = %d, %v; want 0", gid, err)
	}
	if gid, err := (NSS{}).LookupGroup("loom-no-such-group"); !errors.Is(err, ErrUnknownUser) {
		t.Errorf("LookupGroup(loom-no-such-group) = %d, %v; want ErrUnknownUser", gid, err)
	}
}
