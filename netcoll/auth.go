package netcoll

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/loomhpc/loom/rankenv"
)

// Authentication: before any other byte, both ends of every connection
// (a rank and the store, two ranks of the mesh) prove that they know the
// job's secret, LOOM_JOB_SECRET, with a challenge-response over HMAC-SHA256:
//
//	dialer   -> acceptor: "NCA1", nonce Nd (32 bytes)
//	acceptor -> dialer:   "NCA1", nonce Na (32 bytes), proof Pa (32 bytes)
//	dialer   -> acceptor: proof Pd (32 bytes)
//	acceptor -> dialer:   one status byte, 0 when Pd is right
//
// where P = HMAC-SHA256(secret, label, purpose, role, Nd, Na). The label
// and purpose ("store" or "peer") keep a proof from being replayed on
// another kind of connection; the role ("dialer" or "acceptor") keeps a
// proof reflected back at its sender from passing, and the fresh nonces on
// both sides keep an old proof from being replayed. Every message has a
// fixed size, so nothing read here is a length. The handshake
// authenticates the two ends; it does not encrypt or sign what follows.
const (
	authMagic  = "NCA1"
	authLabel  = "loom netcoll auth v1"
	nonceLen   = 32
	proofLen   = sha256.Size
	authOK     = 0
	authDenied = 1
)

// Purposes of a connection, bound into its proofs.
const (
	purposeStore = "store"
	purposePeer  = "peer"
)

// ErrAuth means the other end of a connection did not prove that it knows
// the job's secret, or refused this rank's proof: the two hold different
// LOOM_JOB_SECRET values, or one of them is no rank of this job.
var ErrAuth = errors.New("netcoll: authentication failed")

// authConn is what the handshake needs of a connection.
type authConn interface {
	io.ReadWriter
	SetDeadline(t time.Time) error
}

func proof(key []byte, purpose, role string, nd, na []byte) []byte {
	m := hmac.New(sha256.New, key)
	for _, s := range []string{authLabel, purpose, role} {
		m.Write([]byte(s))
		m.Write([]byte{0})
	}
	m.Write(nd)
	m.Write(na)
	return m.Sum(nil)
}

// authDial runs the dialing side of the handshake on c. A nil key skips
// it (Config.Insecure). The caller sets c's deadline.
func authDial(c authConn, key []byte, purpose string) error {
	if key == nil {
		return nil
	}
	nd := make([]byte, nonceLen)
	rand.Read(nd)
	if _, err := c.Write(append([]byte(authMagic), nd...)); err != nil {
		return err
	}
	var in [len(authMagic) + nonceLen + proofLen]byte
	if _, err := io.ReadFull(c, in[:]); err != nil {
		// Not ErrAuth: the other end may be on its way out (a stale
		// store), or an older netcoll that closes on the magic.
		return fmt.Errorf("netcoll: the %s closed the connection during authentication: %w", purpose, err)
	}
	if string(in[:len(authMagic)]) != authMagic {
		return fmt.Errorf("%w: the %s does not speak netcoll's authenticated protocol", ErrAuth, purpose)
	}
	na := in[len(authMagic) : len(authMagic)+nonceLen]
	if !hmac.Equal(in[len(authMagic)+nonceLen:], proof(key, purpose, "acceptor", nd, na)) {
		return fmt.Errorf("%w: the %s's proof does not match this rank's %s: the two hold different secrets", ErrAuth, purpose, rankenv.LoomJobSecret)
	}
	if _, err := c.Write(proof(key, purpose, "dialer", nd, na)); err != nil {
		return err
	}
	var st [1]byte
	if _, err := io.ReadFull(c, st[:]); err != nil {
		return err
	}
	if st[0] != authOK {
		return fmt.Errorf("%w: the %s refused this rank's proof of %s", ErrAuth, purpose, rankenv.LoomJobSecret)
	}
	return nil
}

// authAccept runs the accepting side of the handshake on c. A nil key
// skips it. The caller sets c's deadline and closes c on error.
func authAccept(c authConn, key []byte, purpose string) error {
	if key == nil {
		return nil
	}
	var in [len(authMagic) + nonceLen]byte
	if _, err := io.ReadFull(c, in[:]); err != nil {
		return err
	}
	if string(in[:len(authMagic)]) != authMagic {
		return fmt.Errorf("%w: a connection that does not speak netcoll's authenticated protocol", ErrAuth)
	}
	nd := in[len(authMagic):]
	na := make([]byte, nonceLen)
	rand.Read(na)
	out := append([]byte(authMagic), na...)
	if _, err := c.Write(append(out, proof(key, purpose, "acceptor", nd, na)...)); err != nil {
		return err
	}
	var pd [proofLen]byte
	if _, err := io.ReadFull(c, pd[:]); err != nil {
		return err
	}
	if !hmac.Equal(pd[:], proof(key, purpose, "dialer", nd, na)) {
		c.Write([]byte{authDenied})
		return fmt.Errorf("%w: a %s connection that does not know this job's %s", ErrAuth, purpose, rankenv.LoomJobSecret)
	}
	_, err := c.Write([]byte{authOK})
	return err
}
