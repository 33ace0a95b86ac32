// Package callcred is the client's half of MUNGE authentication, apart
// from package auth so that the CLI makes credentials without linking
// gRPC: a credential is made for each call and bound to the call's full
// method, and travels in the call's metadata under MetadataKey. The
// server's check (auth's interceptors) uses the same key and payload.
package callcred

import "fmt"

// MetadataKey is the metadata key of a call's MUNGE credential.
const MetadataKey = "loom-munge"

// Payload is the MUNGE payload that binds a credential to a call of
// fullMethod, so that a credential seen on the wire cannot be replayed
// for another method.
func Payload(fullMethod string) string { return "loom-call-v1 " + fullMethod }

// Encoder makes MUNGE credentials; munge.Client is the real one.
type Encoder interface {
	Encode(payload []byte) (string, error)
}

// Metadata is the metadata of one call of fullMethod: a fresh credential
// from enc under MetadataKey.
func Metadata(enc Encoder, fullMethod string) (map[string]string, error) {
	cred, err := enc.Encode([]byte(Payload(fullMethod)))
	if err != nil {
		return nil, fmt.Errorf("auth: MUNGE credential for %s: %w", fullMethod, err)
	}
	return map[string]string{MetadataKey: cred}, nil
}
