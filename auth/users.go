package auth

import (
	"errors"
	"fmt"
	"os/user"
	"strconv"
)

// ErrUnknownUser is matched by the error of a uid or group that does not
// resolve on this host.
var ErrUnknownUser = errors.New("auth: unknown user")

// User is an account as this host's name service (NSS) knows it.
type User struct {
	Name string
	UID  uint32
	// GID is the primary group.
	GID uint32
	// Groups are all the groups the user is in, primary included.
	Groups []uint32
}

// Directory resolves users and groups. NSS is the real one;
// MemoryDirectory serves tests.
type Directory interface {
	LookupUser(uid uint32) (User, error)
	LookupGroup(name string) (gid uint32, err error)
}

// LookupUser returns the account of uid from this host's NSS (passwd and
// group, LDAP or sssd where configured): the agent calls it before
// starting a job as uid and refuses the job when it fails.
func LookupUser(uid uint32) (User, error) { return NSS{}.LookupUser(uid) }

// NSS is the Directory of this host's name service switch, through os/user
// (getpwuid_r and getgrouplist when built with cgo).
type NSS struct{}

// LookupUser returns the account of uid, or an error matching
// ErrUnknownUser when uid does not resolve.
func (NSS) LookupUser(uid uint32) (User, error) {
	id := strconv.FormatUint(uint64(uid), 10)
	u, err := user.LookupId(id)
	if err != nil {
		var unknown user.UnknownUserIdError
		if errors.As(err, &unknown) {
			return User{}, fmt.Errorf("%w: uid %d does not resolve on this host: create the account here or configure NSS (LDAP, sssd) as on the login nodes", ErrUnknownUser, uid)
		}
		return User{}, fmt.Errorf("auth: look up uid %d: %w", uid, err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return User{}, fmt.Errorf("auth: look up uid %d: primary gid %q is not a number", uid, u.Gid)
	}
	groupIDs, err := u.GroupIds()
	if err != nil {
		return User{}, fmt.Errorf("auth: look up groups of %s (uid %d): %w", u.Username, uid, err)
	}
	acct := User{Name: u.Username, UID: uid, GID: uint32(gid)}
	for _, g := range groupIDs {
		n, err := strconv.ParseUint(g, 10, 32)
		if err != nil {
			return User{}, fmt.Errorf("auth: look up groups of %s (uid %d): gid %q is not a number", u.Username, uid, g)
		}
		acct.Groups = append(acct.Groups, uint32(n))
	}
	return acct, nil
}

// LookupGroup returns the gid of the group called name, or an error
// matching ErrUnknownUser when it does not resolve.
func (NSS) LookupGroup(name string) (uint32, error) {
	g, err := user.LookupGroup(name)
	if err != nil {
		var unknown user.UnknownGroupError
		if errors.As(err, &unknown) {
			return 0, fmt.Errorf("%w: group %q does not resolve on this host", ErrUnknownUser, name)
		}
		return 0, fmt.Errorf("auth: look up group %q: %w", name, err)
	}
	gid, err := strconv.ParseUint(g.Gid, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("auth: look up group %q: gid %q is not a number", name, g.Gid)
	}
	return uint32(gid), nil
}

// MemoryDirectory is a Directory held in memory, for tests.
type MemoryDirectory struct {
	Users  []User
	Groups map[string]uint32
}

// LookupUser returns the User with uid, or an error matching
// ErrUnknownUser.
func (d MemoryDirectory) LookupUser(uid uint32) (User, error) {
	for _, u := range d.Users {
		if u.UID == uid {
			return u, nil
		}
	}
	return User{}, fmt.Errorf("%w: uid %d", ErrUnknownUser, uid)
}

// LookupGroup returns the gid of name, or an error matching ErrUnknownUser.
func (d MemoryDirectory) LookupGroup(name string) (uint32, error) {
	gid, ok := d.Groups[name]
	if !ok {
		return 0, fmt.Errorf("%w: group %q", ErrUnknownUser, name)
	}
	return gid, nil
}
