package auth

import (
	"errors"
	"fmt"
	"slices"
)

// Policy says who may act on what: the owner of a job acts on it, and
// operators (Slurm's SlurmUser and AdminLevel=Operator) act on every job
// and on the cluster. The zero Policy has no operators but root local to
// the host.
type Policy struct {
	// OperatorUsers are user names of operators.
	OperatorUsers []string
	// OperatorGroups are group names whose members are operators.
	OperatorGroups []string
	// Directory resolves callers' names and groups; nil means NSS.
	Directory Directory
}

func (p *Policy) directory() Directory {
	if p.Directory == nil {
		return NSS{}
	}
	return p.Directory
}

// Validate reports operator groups that do not resolve on this host, so a
// misspelt name is reported at start instead of never matching.
func (p *Policy) Validate() error {
	var errs []error
	for i, g := range p.OperatorGroups {
		if _, err := p.directory().LookupGroup(g); err != nil {
			errs = append(errs, fmt.Errorf("auth: operators.groups[%d] %q: %w", i, g, err))
		}
	}
	return errors.Join(errs...)
}

// IsOperator reports whether id is an operator. Root (uid 0) is one only
// when id.Local, that is when it connected through the local socket of a
// daemon's host (a server, for the server's policy): root elsewhere, say
// on a compute node, holds the MUNGE key but does not run the cluster.
// Root is never an operator by name or group. Any other uid is one when
// its name is in OperatorUsers or its credential's gid or any of its
// groups is in OperatorGroups; a uid that does not resolve on this host
// matches by its credential's gid only.
func (p *Policy) IsOperator(id Identity) bool {
	if !id.Valid() {
		return false
	}
	if id.UID == 0 {
		return id.Local
	}
	gids := []uint32{id.GID}
	if u, err := p.directory().LookupUser(id.UID); err == nil {
		if slices.Contains(p.OperatorUsers, u.Name) {
			return true
		}
		gids = append(gids, u.GID)
		gids = append(gids, u.Groups...)
	}
	for _, g := range p.OperatorGroups {
		gid, err := p.directory().LookupGroup(g)
		if err == nil && slices.Contains(gids, gid) {
			return true
		}
	}
	return false
}

// CanActOnJob reports whether caller may cancel, hold, requeue or read
// the job of ownerUID: its owner and operators may.
func (p *Policy) CanActOnJob(caller Identity, ownerUID uint32) bool {
	if !caller.Valid() {
		return false
	}
	return caller.UID == ownerUID || p.IsOperator(caller)
}
