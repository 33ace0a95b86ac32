package scheduler

import (
	"time"

	"github.com/loomhpc/loom/api"
)

// Pending reasons of jobs that name an advance reservation (--reservation).
const (
	// ReasonReservation: the job's reservation has not started yet; the
	// expected start is the reservation's.
	ReasonReservation = "Reservation"
	// ReasonReservationDeleted: the reservation the job names is gone
	// (deleted, or ended before the job started). The job waits until it
	// is cancelled, as in Slurm.
	ReasonReservationDeleted = "ReservationDeleted"
	// ReasonReservationAccess: the reservation no longer lists the job's
	// user or account (an update took them off).
	ReasonReservationAccess = "ReservationAccess"
)

// resvState is what a cycle knows of the advance reservations.
type resvState struct {
	byName map[string]*api.Reservation
	// active maps an active reservation's name to its nodes.
	active map[string]map[string]bool
	// reservedNow is every node of an active reservation: jobs outside
	// them keep off.
	reservedNow map[string]bool
	// admin counts the entries of cycle.reservations that are future
	// advance reservations, not gangs' (the depth counts gangs only).
	admin int
}

// setupReservations reads the view's advance reservations. An active one
// confines its jobs to its nodes and keeps everyone else off them (see
// confine); a future one becomes a backfill reservation of its whole
// nodes from its start to its end, so that a job may run there before it
// only if its time limit ends by the start, exactly as lower jobs
// backfill around a waiting gang.
func (c *cycle) setupReservations() {
	if len(c.v.Reservations) == 0 {
		return
	}
	now := c.now.UnixMilli()
	c.resv.byName = make(map[string]*api.Reservation, len(c.v.Reservations))
	for _, ar := range c.v.Reservations {
		c.resv.byName[ar.Name] = ar
		switch {
		case ar.EndUnixMs <= now:
			// Ended: the leader is removing it; it holds nothing.
		case ar.StartUnixMs <= now:
			nodes := make(map[string]bool, len(ar.Nodes))
			for _, n := range ar.Nodes {
				nodes[n] = true
				if c.resv.reservedNow == nil {
					c.resv.reservedNow = map[string]bool{}
				}
				c.resv.reservedNow[n] = true
			}
			if c.resv.active == nil {
				c.resv.active = map[string]map[string]bool{}
			}
			c.resv.active[ar.Name] = nodes
		default:
			res := &reservation{start: time.UnixMilli(ar.StartUnixMs), end: time.UnixMilli(ar.EndUnixMs)}
			for _, n := range ar.Nodes {
				i, ok := c.byName[n]
				if !ok {
					continue
				}
				// What is free now: running jobs' resources come back
				// through the timeline as they end.
				res.nodes = append(res.nodes, i)
				res.masks = append(res.masks, c.nodes[i].healthy)
				res.cpus = append(res.cpus, c.st.cpus[i])
				res.mem = append(res.mem, c.st.mem[i])
			}
			if len(res.nodes) > 0 {
				c.addReservation(res)
				c.resv.admin++
			}
		}
	}
}

// gangReservations is how many waiting gangs hold a reservation.
func (c *cycle) gangReservations() int { return len(c.reservations) - c.resv.admin }

// reservationWait returns why a job that names a reservation may not be
// considered this cycle, and when it may be, or "".
func (c *cycle) reservationWait(j *api.Job) (string, int64) {
	name := j.GetSpec().GetReservation()
	if name == "" {
		return "", 0
	}
	ar := c.resv.byName[name]
	now := c.now.UnixMilli()
	switch {
	case ar == nil || ar.EndUnixMs <= now:
		return ReasonReservationDeleted, 0
	case !ar.Allows(j.User, AccountOf(j)):
		return ReasonReservationAccess, 0
	case ar.StartUnixMs > now:
		return ReasonReservation, ar.StartUnixMs
	}
	return "", 0
}

// confine narrows r's candidate nodes for the advance reservations: a job
// of an active reservation to its nodes (and to its --nodelist among
// them), any other job off every active reservation's nodes. It returns
// the exclusion and list keys with the reservation's part added, so the
// cycle's caches keep the sets apart.
func (c *cycle) confine(r *request, excludeKey, onlyKey string) (string, string) {
	if name := r.job.GetSpec().GetReservation(); name != "" {
		nodes := c.resv.active[name] // nil when not active: ineligible anyway
		only := make(map[string]bool, len(nodes))
		for n := range nodes {
			if r.only == nil || r.only[n] {
				only[n] = true
			}
		}
		r.only = only
		return excludeKey, onlyKey + "\x00resv:" + name
	}
	if len(c.resv.reservedNow) == 0 {
		return excludeKey, onlyKey
	}
	if len(r.exclude) == 0 {
		r.exclude = c.resv.reservedNow // read only
	} else {
		for n := range c.resv.reservedNow {
			r.exclude[n] = true
		}
	}
	return excludeKey + "\x00resv", onlyKey
}
