package api

import (
	"slices"
	"strings"
)

// Reservation flags, as scontrol writes them (Flags=).
const (
	// ReservationMaint marks a maintenance reservation; like OVERLAP it
	// may share nodes with other reservations.
	ReservationMaint = "MAINT"
	// ReservationIgnoreJobs lets a reservation be created on nodes whose
	// running jobs would still run at its start; they are left alone.
	ReservationIgnoreJobs = "IGNORE_JOBS"
	// ReservationOverlap lets a reservation share nodes and time with
	// another.
	ReservationOverlap = "OVERLAP"
)

// ReservationFlags are the flags Loom implements. Slurm has more (FLEX,
// DAILY, ...); each changes what jobs get, so the others are refused.
var ReservationFlags = []string{ReservationMaint, ReservationIgnoreJobs, ReservationOverlap}

// HasFlag reports whether r carries flag f.
func (r *Reservation) HasFlag(f string) bool { return slices.Contains(r.GetFlags(), f) }

// ActiveAt reports whether ms (Unix milliseconds) is within r's window:
// from its start, up to but not including its end.
func (r *Reservation) ActiveAt(ms int64) bool {
	return r.GetStartUnixMs() <= ms && ms < r.GetEndUnixMs()
}

// Overlaps reports whether r and o share a node and a moment.
func (r *Reservation) Overlaps(o *Reservation) bool {
	if r.GetStartUnixMs() >= o.GetEndUnixMs() || o.GetStartUnixMs() >= r.GetEndUnixMs() {
		return false
	}
	for _, n := range r.GetNodes() {
		if slices.Contains(o.GetNodes(), n) {
			return true
		}
	}
	return false
}

// MayShare reports whether r may overlap other reservations: it carries
// OVERLAP or MAINT.
func (r *Reservation) MayShare() bool {
	return r.HasFlag(ReservationOverlap) || r.HasFlag(ReservationMaint)
}

// Allows reports whether a job of user, charged to account, may use r.
// When r names both users and accounts the job must match both, as in
// Slurm.
func (r *Reservation) Allows(user, account string) bool {
	if len(r.GetUsers()) > 0 && !slices.Contains(r.GetUsers(), user) {
		return false
	}
	if len(r.GetAccounts()) > 0 && !slices.Contains(r.GetAccounts(), account) {
		return false
	}
	return len(r.GetUsers())+len(r.GetAccounts()) > 0
}

// ValidateReservation checks what an operator asked for, without the
// cluster: the name, the window, who may use it, its flags, and either
// nodes or a node count. Errors name the scontrol field.
func ValidateReservation(r *Reservation) error {
	name := r.GetName()
	switch {
	case name == "":
		return fieldErr("ReservationName", "is required")
	case strings.ContainsAny(name, " \t\n,=:/"):
		return fieldErr("ReservationName", "%q: a name has no spaces, commas, '=', ':' or '/'", name)
	case len(name) > 64:
		return fieldErr("ReservationName", "%q: longer than 64 characters", name)
	}
	if r.GetStartUnixMs() <= 0 {
		return fieldErr("StartTime", "is required (now or YYYY-MM-DDTHH:MM[:SS])")
	}
	if r.GetEndUnixMs() <= r.GetStartUnixMs() {
		return fieldErr("EndTime", "must be after StartTime (give EndTime= or a positive Duration=)")
	}
	if len(r.GetUsers()) == 0 && len(r.GetAccounts()) == 0 {
		return fieldErr("Users", "give Users= or Accounts=: a reservation nobody may use keeps its nodes idle")
	}
	for _, u := range r.GetUsers() {
		if u == "" || strings.HasPrefix(u, "-") {
			return fieldErr("Users", "%q: give user names; excluding users with '-' is not supported", u)
		}
	}
	for _, a := range r.GetAccounts() {
		if a == "" || strings.HasPrefix(a, "-") {
			return fieldErr("Accounts", "%q: give account names; excluding accounts with '-' is not supported", a)
		}
	}
	for _, f := range r.GetFlags() {
		if !slices.Contains(ReservationFlags, f) {
			return fieldErr("Flags", "%q is not supported (Loom implements %s)", f, strings.Join(ReservationFlags, ", "))
		}
	}
	if len(r.GetNodes()) == 0 && r.GetNodeCount() == 0 {
		return fieldErr("Nodes", "give Nodes= or NodeCnt=")
	}
	if len(r.GetNodes()) > 0 && r.GetNodeCount() != 0 && int(r.GetNodeCount()) != len(r.GetNodes()) {
		return fieldErr("NodeCnt", "%d, but Nodes= names %d nodes", r.GetNodeCount(), len(r.GetNodes()))
	}
	return nil
}
