package scheduler

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/loomhpc/loom/api"
)

// ineligible returns why j may not be considered at all this cycle, and
// when it may be (for --begin), or "".
func (c *cycle) ineligible(j *api.Job) (string, int64) {
	s := j.Spec
	if s.GetHold() {
		return ReasonHeld, 0
	}
	if p := c.partTable.Get(s.PartitionOf()); p != nil && !p.Runs() {
		if p.PartitionState() == api.PartitionInactive {
			return ReasonPartitionInactive, 0
		}
		return ReasonPartitionDown, 0
	}
	if b := s.GetBeginUnixMs(); b > c.now.UnixMilli() {
		return ReasonBeginTime, b
	}
	if r, at := c.reservationWait(j); r != "" {
		return r, at
	}
	if d := s.GetDependency(); d != "" {
		switch c.dependency(j, d) {
		case depWait:
			return ReasonDependency, 0
		case depNever:
			return ReasonDependencyNeverSatisfied, 0
		}
	}
	return "", 0
}

type depState int

const (
	depOK depState = iota
	depWait
	depNever
)

// Dependency is one clause of --dependency.
type Dependency struct {
	Type string   // after, afterany, afterok, afternotok, singleton
	IDs  []uint64 // none for singleton
}

// ParseDependency parses Slurm's --dependency syntax: clauses joined by
// "," (all must hold) or "?" (any may), each "type:id[:id...]" or
// "singleton". It reports whether the clauses are alternatives.
func ParseDependency(s string) (deps []Dependency, any bool, err error) {
	sep := ","
	if strings.Contains(s, "?") {
		sep, any = "?", true
		if strings.Contains(s, ",") {
			return nil, false, fmt.Errorf("--dependency=%s: use either ',' or '?' between clauses, not both", s)
		}
	}
	for _, cl := range strings.Split(s, sep) {
		parts := strings.Split(cl, ":")
		d := Dependency{Type: strings.ToLower(parts[0])}
		switch d.Type {
		case "singleton":
			if len(parts) != 1 {
				return nil, false, fmt.Errorf("--dependency=%s: singleton takes no job ids", s)
			}
		case "after", "afterany", "afterok", "afternotok":
			if len(parts) < 2 {
				return nil, false, fmt.Errorf("--dependency=%s: %s needs at least one job id", s, d.Type)
			}
			for _, p := range parts[1:] {
				p, _, _ = strings.Cut(p, "+") // after:id+minutes: the delay is not modelled
				id, err := strconv.ParseUint(p, 10, 64)
				if err != nil {
					return nil, false, fmt.Errorf("--dependency=%s: job id %q is not a number", s, p)
				}
				d.IDs = append(d.IDs, id)
			}
		default:
			return nil, false, fmt.Errorf("--dependency=%s: unknown type %q (want after, afterany, afterok, afternotok or singleton)", s, d.Type)
		}
		deps = append(deps, d)
	}
	return deps, any, nil
}

// dependency evaluates j's --dependency against the jobs the view knows.
// A job id the view does not know (long purged) counts as satisfied.
func (c *cycle) dependency(j *api.Job, spec string) depState {
	deps, any, err := ParseDependency(spec)
	if err != nil {
		return depNever
	}
	result := depOK
	if any {
		result = depNever
	}
	for _, d := range deps {
		st := c.clause(j, d)
		if any {
			if st == depOK {
				return depOK
			}
			if st == depWait {
				result = depWait
			}
			continue
		}
		if st > result {
			result = st
		}
	}
	return result
}

func (c *cycle) clause(j *api.Job, d Dependency) depState {
	if d.Type == "singleton" {
		if c.byNameUser == nil {
			c.byNameUser = map[string][]*api.Job{}
			for _, o := range c.v.Jobs {
				k := o.GetSpec().GetName() + "\x00" + o.User
				c.byNameUser[k] = append(c.byNameUser[k], o)
			}
		}
		for _, o := range c.byNameUser[j.GetSpec().GetName()+"\x00"+j.User] {
			if o.Id == j.Id {
				continue
			}
			if o.State.Active() || o.HoldsResources() || (o.State == api.JobState_PENDING && o.Id < j.Id) {
				return depWait
			}
		}
		return depOK
	}
	out := depOK
	for _, id := range d.IDs {
		o := c.lookup(id)
		if o == nil {
			continue
		}
		var st depState
		done := o.State.Terminal()
		switch d.Type {
		case "after":
			if o.StartUnixMs == 0 && !done {
				st = depWait
			}
		case "afterany":
			if !done {
				st = depWait
			}
		case "afterok":
			switch {
			case !done:
				st = depWait
			case o.State != api.JobState_COMPLETED:
				st = depNever
			}
		case "afternotok":
			switch {
			case !done:
				st = depWait
			case o.State == api.JobState_COMPLETED:
				st = depNever
			}
		}
		out = max(out, st)
	}
	return out
}

func (c *cycle) lookup(id uint64) *api.Job {
	if c.v.Lookup != nil {
		return c.v.Lookup(id)
	}
	for _, j := range c.v.Jobs {
		if j.Id == id {
			return j
		}
	}
	return nil
}

// arrayLimit returns the %N cap of j's array, if it has one.
func (c *cycle) arrayLimit(j *api.Job) (int, bool) {
	if j.ArrayJobId == 0 {
		return 0, false
	}
	_, lim, ok := strings.Cut(j.GetSpec().GetArray(), "%")
	if !ok {
		return 0, false
	}
	n, err := strconv.Atoi(lim)
	if err != nil || n <= 0 {
		return 0, false
	}
	return n, true
}
