package state

import (
	"errors"
	"fmt"
	"iter"
	"slices"
	"strings"

	"github.com/loomhpc/loom/api"
	"google.golang.org/protobuf/proto"
)

// Errors of advance reservations, in Result.Err.
var (
	ErrReservationNotFound = errors.New("no such reservation")
	ErrReservationExists   = errors.New("reservation exists")
	// ErrReservationConflict: the nodes are another reservation's in the
	// window, or running jobs hold them at its start.
	ErrReservationConflict = errors.New("reservation conflicts")
)

// Reservation returns the advance reservation called name, or nil.
func (v *View) Reservation(name string) *api.Reservation {
	r, _ := v.reservations.Get([]byte(name))
	return r
}

// Reservations yields the advance reservations in name order.
func (v *View) Reservations() iter.Seq[*api.Reservation] {
	return func(yield func(*api.Reservation) bool) {
		it := v.reservations.Root().Iterator()
		for _, r, ok := it.Next(); ok; _, r, ok = it.Next() {
			if !yield(r) {
				return
			}
		}
	}
}

// applyReservation creates, updates or deletes one reservation. It checks
// the command against the state it applies to, so that two operators'
// overlapping creates cannot both succeed.
func applyReservation(t *txn, msg proto.Message) *Result {
	c := msg.(*api.ReservationCommand)
	r := c.GetReservation()
	if r == nil {
		return &Result{Err: malformed("reservation command without a reservation")}
	}
	name := r.GetName()
	old, _ := t.resv.Get([]byte(name))
	switch c.Op {
	case api.ReservationOp_RESERVATION_DELETE:
		if old == nil {
			return &Result{Err: fmt.Errorf("reservation %q: %w", name, ErrReservationNotFound)}
		}
		t.resv.Delete([]byte(name))
		return &Result{}
	case api.ReservationOp_RESERVATION_EXPIRE:
		// Only a reservation whose end has passed: an update that moved
		// the end after the leader decided leaves it in place.
		if old != nil && old.EndUnixMs <= c.NowUnixMs {
			t.resv.Delete([]byte(name))
		}
		return &Result{}
	case api.ReservationOp_RESERVATION_CREATE:
		if old != nil {
			return &Result{Err: fmt.Errorf("ReservationName: %q: %w", name, ErrReservationExists)}
		}
	case api.ReservationOp_RESERVATION_UPDATE:
		if old == nil {
			return &Result{Err: fmt.Errorf("reservation %q: %w", name, ErrReservationNotFound)}
		}
	default:
		return &Result{Err: fmt.Errorf("reservation %q: unknown operation %v", name, c.Op)}
	}
	if err := api.ValidateReservation(r); err != nil {
		return &Result{Err: err}
	}
	r = proto.Clone(r).(*api.Reservation)
	if len(r.Nodes) == 0 {
		picked, err := t.pickNodes(r)
		if err != nil {
			return &Result{Err: err}
		}
		r.Nodes = picked
	}
	slices.Sort(r.Nodes)
	r.Nodes = slices.Compact(r.Nodes)
	for _, n := range r.Nodes {
		if t.node(n) == nil {
			return &Result{Err: fmt.Errorf("Nodes: %q: %w", n, ErrNodeNotFound)}
		}
	}
	if err := t.checkOverlap(r); err != nil {
		return &Result{Err: err}
	}
	// Running jobs are checked when the nodes or the start change; an
	// update of the users or the end leaves the jobs where they were.
	moved := old == nil || old.StartUnixMs != r.StartUnixMs || !slices.Equal(old.Nodes, r.Nodes)
	if moved && !r.HasFlag(api.ReservationIgnoreJobs) {
		for _, n := range r.Nodes {
			if j := t.runningPast(n, r.StartUnixMs); j != nil {
				return &Result{Err: fmt.Errorf("Nodes: %s: job %d runs there past StartTime (Flags=IGNORE_JOBS leaves such jobs running): %w",
					n, j.Id, ErrReservationConflict)}
			}
		}
	}
	if old != nil {
		r.CreatedBy, r.CreatedUnixMs = old.CreatedBy, old.CreatedUnixMs
	} else {
		r.CreatedUnixMs = c.NowUnixMs
	}
	t.resv.Insert([]byte(name), r)
	return &Result{}
}

// checkOverlap refuses r when it shares nodes and time with another
// reservation, unless r may share (OVERLAP, MAINT).
func (t *txn) checkOverlap(r *api.Reservation) error {
	if r.MayShare() {
		return nil
	}
	it := t.resv.Root().Iterator()
	for _, o, ok := it.Next(); ok; _, o, ok = it.Next() {
		if o.Name != r.Name && r.Overlaps(o) {
			return fmt.Errorf("Nodes: reservation %q holds some of these nodes in that window (Flags=OVERLAP allows it): %w", o.Name, ErrReservationConflict)
		}
	}
	return nil
}

// pickNodes chooses NodeCnt nodes for r, in name order: nodes of its
// partition (any partition when none is named) that are schedulable, in
// no other reservation during r's window, and, unless IGNORE_JOBS, run no
// job past r's start. The choice is made once, at create, as in Slurm.
func (t *txn) pickNodes(r *api.Reservation) ([]string, error) {
	var picked []string
	it := t.nodes.Root().Iterator()
	for _, n, ok := it.Next(); ok && len(picked) < int(r.NodeCount); _, n, ok = it.Next() {
		if r.Partition != "" && !n.InPartition(r.Partition) || !n.Schedulable() {
			continue
		}
		trial := &api.Reservation{Name: r.Name, StartUnixMs: r.StartUnixMs, EndUnixMs: r.EndUnixMs, Nodes: []string{n.Name}, Flags: r.Flags}
		if t.checkOverlap(trial) != nil {
			continue
		}
		if !r.HasFlag(api.ReservationIgnoreJobs) && t.runningPast(n.Name, r.StartUnixMs) != nil {
			continue
		}
		picked = append(picked, n.Name)
	}
	if len(picked) < int(r.NodeCount) {
		where := "the cluster"
		if r.Partition != "" {
			where = "partition " + r.Partition
		}
		return nil, fmt.Errorf("NodeCnt: %d: only %d nodes of %s are free for that window: %w", r.NodeCount, len(picked), where, ErrReservationConflict)
	}
	return picked, nil
}

// runningPast returns a job holding resources on node that may still hold
// them at startMs: one with no time limit, or whose limit ends later.
func (t *txn) runningPast(node string, startMs int64) *api.Job {
	for j := range t.holdingJobs() {
		if !slices.ContainsFunc(j.GetAllocation().GetNodes(), func(n string) bool { return strings.EqualFold(n, node) }) {
			continue
		}
		limit := j.GetSpec().GetTimeLimitS()
		if limit <= 0 {
			limit = t.config.GetScheduler().GetDefaultTimeS()
		}
		if limit <= 0 || j.StartUnixMs+limit*1000 > startMs {
			return j
		}
	}
	return nil
}

// checkReservations re-checks a placement against the reservations active
// at nowMs, as checkPlacement does against resources: a job of a
// reservation runs only on its nodes while it is active, and no other job
// lands on an active reservation's node. The scheduler never plans
// otherwise; this catches a plan made before a reservation was created
// or ended.
func (t *txn) checkReservations(j *api.Job, a *api.Allocation, nowMs int64) error {
	name := j.GetSpec().GetReservation()
	if name != "" {
		r, _ := t.resv.Get([]byte(name))
		if r == nil || !r.ActiveAt(nowMs) {
			return fmt.Errorf("%w: job %d's reservation %q is not active", ErrPlanConflict, j.Id, name)
		}
		for _, n := range a.GetNodes() {
			if !slices.Contains(r.Nodes, n) {
				return fmt.Errorf("%w: node %s is not in job %d's reservation %q", ErrPlanConflict, n, j.Id, name)
			}
		}
		return nil
	}
	it := t.resv.Root().Iterator()
	for _, r, ok := it.Next(); ok; _, r, ok = it.Next() {
		if !r.ActiveAt(nowMs) {
			continue
		}
		for _, n := range a.GetNodes() {
			if slices.Contains(r.Nodes, n) {
				return fmt.Errorf("%w: node %s is reserved by %q", ErrPlanConflict, n, r.Name)
			}
		}
	}
	return nil
}
