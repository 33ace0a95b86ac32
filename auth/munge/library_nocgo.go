//go:build !cgo

package munge

import "fmt"

// library stands in for libmunge in a build without cgo, where it cannot
// be loaded.
type library struct{}

func openLibrary(name string) (*library, error) {
	return nil, fmt.Errorf("%w (this loom was built without cgo, which loading %s needs)", ErrNoLibrary, name)
}

func (l *library) encode(socket string, ttl int, payload []byte) (string, error) {
	return "", ErrNoLibrary
}

func (l *library) decode(socket, cred string) (Credential, error) {
	return Credential{}, ErrNoLibrary
}
