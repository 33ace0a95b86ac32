package munge

import (
	"errors"
	"fmt"
	"math"
	"sync"
	"time"
)

// LibraryName is the shared library the package loads at run time.
const LibraryName = "libmunge.so.2"

// DefaultSocket is where munged listens unless told otherwise; a Client
// with no Socket uses it.
const DefaultSocket = "/run/munge/munge.socket.2"

// Sentinels that an *Error from Encode or Decode matches with errors.Is.
var (
	// ErrNoLibrary means libmunge.so.2 could not be loaded on this host.
	ErrNoLibrary = errors.New("munge: " + LibraryName + " not found: install munge or set auth=local")
	// ErrDaemon means munged did not answer on its socket.
	ErrDaemon = errors.New("munge: munged not reachable")
	// ErrReplayed means munged has already decoded this credential once.
	ErrReplayed = errors.New("munge: credential replayed")
	// ErrExpired means the credential is older than its time-to-live.
	ErrExpired = errors.New("munge: credential expired")
	// ErrRewound means the credential was made in the future by this
	// host's clock.
	ErrRewound = errors.New("munge: credential rewound")
	// ErrInvalid means the credential is malformed, sealed with another
	// key, or not meant for this decoder.
	ErrInvalid = errors.New("munge: credential invalid")
)

// Codes of libmunge's munge_err_t that the package tells apart.
const (
	codeBadArg       = 2
	codeNoMemory     = 5
	codeSocket       = 6
	codeTimeout      = 7
	codeBadCred      = 8
	codeBadVersion   = 9
	codeBadCipher    = 10
	codeBadMAC       = 11
	codeBadZip       = 12
	codeBadRealm     = 13
	codeInvalid      = 14
	codeExpired      = 15
	codeRewound      = 16
	codeReplayed     = 17
	codeUnauthorized = 18
)

// Error is a refusal or failure reported by libmunge.
type Error struct {
	Op      string // "encode" or "decode"
	Socket  string // munged's socket
	Code    int    // libmunge's munge_err_t
	Message string // libmunge's description of Code
}

// Error returns libmunge's description with the operation and, for
// socket failures, the socket it tried.
func (e *Error) Error() string {
	if e.Code == codeSocket || e.Code == codeTimeout {
		return fmt.Sprintf("munge: %s: %s: is munged running with socket %s?", e.Op, e.Message, e.Socket)
	}
	return fmt.Sprintf("munge: %s: %s", e.Op, e.Message)
}

// Unwrap returns the sentinel for e.Code, or nil for codes that have none.
func (e *Error) Unwrap() error {
	switch e.Code {
	case codeBadArg:
		// The credential is the only argument a decode takes from its
		// caller: libmunge says "bad argument" for an empty one.
		if e.Op == "decode" {
			return ErrInvalid
		}
	case codeSocket, codeTimeout:
		return ErrDaemon
	case codeReplayed:
		return ErrReplayed
	case codeExpired:
		return ErrExpired
	case codeRewound:
		return ErrRewound
	case codeBadCred, codeBadVersion, codeBadCipher, codeBadMAC, codeBadZip,
		codeBadRealm, codeInvalid, codeUnauthorized:
		return ErrInvalid
	}
	return nil
}

// Credential is what Decode learned from a valid credential.
type Credential struct {
	UID, GID uint32 // the process that made the credential
	Payload  []byte // the bytes given to Encode
	Encoded  time.Time
	Decoded  time.Time
	TTL      time.Duration
}

// Client makes and checks credentials through one munged. The zero Client
// uses munged's default socket and time-to-live. A Client is safe for
// concurrent use: each call has its own libmunge context.
type Client struct {
	// Socket is munged's socket; empty means DefaultSocket.
	Socket string
	// TTL is how long a credential from Encode stays valid, rounded up to
	// whole seconds; zero means munged's default (300 s unless
	// configured). munged caps it at its --max-ttl.
	TTL time.Duration
}

// Encode returns a new credential carrying payload and the caller's uid
// and gid, made by the default munged.
func Encode(payload []byte) (string, error) { return Client{}.Encode(payload) }

// Decode checks cred with the default munged.
func Decode(cred string) (Credential, error) { return Client{}.Decode(cred) }

// Load loads libmunge if it is not loaded yet and reports ErrNoLibrary
// when it cannot be: a daemon configured for MUNGE calls it at start to
// fail early with a clear message.
func Load() error {
	_, err := loadDefault()
	return err
}

var loadDefault = sync.OnceValues(func() (*library, error) { return openLibrary(LibraryName) })

// Encode returns a new credential carrying payload and the caller's uid
// and gid. A credential decodes once: make one for each use.
func (c Client) Encode(payload []byte) (string, error) {
	ttl, err := c.ttlSeconds()
	if err != nil {
		return "", err
	}
	lib, err := loadDefault()
	if err != nil {
		return "", err
	}
	return lib.encode(c.Socket, ttl, payload)
}

// Decode checks cred and returns its maker's uid and gid and its payload.
// A refused credential returns an *Error matching ErrReplayed, ErrExpired,
// ErrRewound or ErrInvalid, and no Credential: its uid is not to be
// believed.
func (c Client) Decode(cred string) (Credential, error) {
	lib, err := loadDefault()
	if err != nil {
		return Credential{}, err
	}
	return lib.decode(c.Socket, cred)
}

// ttlSeconds returns c.TTL in whole seconds, rounded up.
func (c Client) ttlSeconds() (int, error) {
	if c.TTL < 0 {
		return 0, fmt.Errorf("munge: TTL %v is negative", c.TTL)
	}
	secs := (c.TTL + time.Second - 1) / time.Second
	if secs > math.MaxInt32 {
		return 0, fmt.Errorf("munge: TTL %v is too long", c.TTL)
	}
	return int(secs), nil
}
