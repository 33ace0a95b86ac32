package pki

import (
	"sync"
	"testing"
)

// TestPKI is a CA in a temporary directory that hands out certificates,
// for tests of this and other packages (a server's or agent's tests that
// run with TLS on).
type TestPKI struct {
	t   testing.TB
	CA  *CA
	dir string

	mu    sync.Mutex
	files map[Identity]Files
}

// NewTestPKI creates a CA under t.TempDir().
func NewTestPKI(t testing.TB) *TestPKI {
	t.Helper()
	dir := t.TempDir()
	ca, err := CreateCA(dir, CAOptions{})
	if err != nil {
		t.Fatalf("CreateCA: %v", err)
	}
	return &TestPKI{t: t, CA: ca, dir: dir, files: map[Identity]Files{}}
}

// Files returns the files of a certificate for role and node (empty for
// RoleCLI), creating it on first use.
func (p *TestPKI) Files(role Role, node string) Files {
	p.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	id := Identity{Role: role, Node: node}
	if f, ok := p.files[id]; ok {
		return f
	}
	f, err := CreateCert(p.CA, role, node, CertOptions{Dir: p.dir})
	if err != nil {
		p.t.Fatalf("CreateCert(%s): %v", id, err)
	}
	p.files[id] = f
	return f
}
