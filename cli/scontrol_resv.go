package cli

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/loomhpc/loom/api"
	"github.com/loomhpc/loom/api/apiclient"
	"github.com/loomhpc/loom/rpcclient"
)

// Advance reservations: scontrol create/update/delete/show reservation
// and sinfo -T, with Slurm 22.05's keys and layout.

// isReservationCommand reports whether the words after "create",
// "update" or "delete" are about a reservation: the tag "reservation"
// (or "res"), or a ReservationName= key, and no JobId= or NodeName= (an
// update of a job's Reservation= is the job's).
func isReservationCommand(args []string) bool {
	found := false
	for _, a := range args {
		k, _, _ := strings.Cut(a, "=")
		switch strings.ToLower(k) {
		case "reservation", "reservations", "res", "reservationname", "resv":
			found = true
		case "jobid", "job", "nodename", "node":
			return false
		}
	}
	return found
}

// resvArgs splits KEY=VALUE words (the tag "reservation"/"res" dropped)
// into the key in lower case, the operator ("=", "+=" or "-=") and the
// value.
type resvArg struct{ key, op, val string }

func parseResvArgs(args []string) ([]resvArg, error) {
	var out []resvArg
	for _, a := range args {
		k, v, ok := strings.Cut(a, "=")
		lk := strings.ToLower(k)
		if !ok {
			if lk == "reservation" || lk == "res" || lk == "reservations" {
				continue
			}
			return nil, &usageError{fmt.Sprintf("invalid input %q: want KEY=VALUE (quote values with blanks)", a)}
		}
		op := "="
		switch {
		case strings.HasSuffix(lk, "+"):
			op, lk = "+=", strings.TrimSuffix(lk, "+")
		case strings.HasSuffix(lk, "-"):
			op, lk = "-=", strings.TrimSuffix(lk, "-")
		}
		if lk == "reservation" || lk == "resv" {
			lk = "reservationname"
		}
		out = append(out, resvArg{key: lk, op: op, val: strings.Trim(v, `"'`)})
	}
	return out, nil
}

// unsupportedResvKeys are scontrol's reservation keys Loom does not
// implement; each changes what a reservation holds, so it is refused.
var unsupportedResvKeys = map[string]string{
	"corecnt": "Loom reserves whole nodes", "licenses": "Loom schedules no licenses", "burstbuffer": "Loom has no burst buffers",
	"features": "give Nodes= or NodeCnt=", "tres": "give Nodes= or NodeCnt=", "watts": "Loom does not schedule power",
	"groups": "give Users= or Accounts=", "maxstartdelay": "not supported", "qos": "give Users= or Accounts=",
	"allowed_partitions": "give Users= or Accounts=",
}

// reservationTime reads StartTime=/EndTime= as scontrol does: now,
// now+N[units], YYYY-MM-DD[THH:MM[:SS]], HH:MM[:SS].
func reservationTime(e *env, key, v string) (int64, error) {
	t, err := parseBegin(v, e.now().In(e.loc))
	if err != nil {
		return 0, &api.FieldError{Field: key, Msg: err.Error()}
	}
	return t.UnixMilli(), nil
}

// reservationDuration reads Duration=: minutes, M:S, H:M:S, D-H[:M[:S]].
func reservationDuration(v string) (int64, error) {
	s, err := api.ParseSlurmTime(v)
	if err != nil {
		return 0, &api.FieldError{Field: "Duration", Msg: err.Error()}
	}
	if s <= 0 {
		return 0, &api.FieldError{Field: "Duration", Msg: fmt.Sprintf("%q: a reservation needs an end; give a positive duration or EndTime=", v)}
	}
	return s, nil
}

func splitList(v string) []string {
	var out []string
	for _, x := range strings.Split(v, ",") {
		if x = strings.TrimSpace(x); x != "" {
			out = append(out, x)
		}
	}
	return out
}

func reservationFlags(v string) ([]string, error) {
	var out []string
	for _, f := range splitList(v) {
		f = strings.ToUpper(f)
		if !slices.Contains(api.ReservationFlags, f) {
			return nil, &api.FieldError{Field: "Flags", Msg: fmt.Sprintf("%q is not supported (Loom implements %s)", f, strings.Join(api.ReservationFlags, ", "))}
		}
		if !slices.Contains(out, f) {
			out = append(out, f)
		}
	}
	return out, nil
}

// reservationNodes expands Nodes=: a hostlist, or ALL for every node.
func reservationNodes(ctx context.Context, c *client, v string) ([]string, error) {
	if strings.EqualFold(v, "ALL") {
		resp, err := c.listNodes(ctx)
		if err != nil {
			return nil, err
		}
		var all []string
		for _, n := range resp.GetNodes() {
			all = append(all, n.GetNode().GetName())
		}
		return all, nil
	}
	names, err := api.ExpandHostlist(v)
	if err != nil {
		return nil, &api.FieldError{Field: "Nodes", Msg: err.Error()}
	}
	return names, nil
}

func (c *client) reservations(cc *rpcclient.Conn) apiclient.ReservationServiceClient {
	return apiclient.NewReservationServiceClient(cc)
}

// createReservation is scontrol create reservation KEY=VALUE...
func createReservation(ctx context.Context, e *env, c *client, args []string) int {
	kvs, err := parseResvArgs(args)
	if err != nil {
		return e.fail(err)
	}
	r := &api.Reservation{}
	var durationS int64
	var hasEnd bool
	for _, kv := range kvs {
		if kv.op != "=" {
			return e.fail(&usageError{fmt.Sprintf("%s%s: create takes KEY=VALUE", kv.key, kv.op)})
		}
		switch kv.key {
		case "reservationname":
			r.Name = kv.val
		case "starttime":
			if r.StartUnixMs, err = reservationTime(e, "StartTime", kv.val); err != nil {
				return e.fail(err)
			}
		case "endtime":
			if r.EndUnixMs, err = reservationTime(e, "EndTime", kv.val); err != nil {
				return e.fail(err)
			}
			hasEnd = true
		case "duration":
			if durationS, err = reservationDuration(kv.val); err != nil {
				return e.fail(err)
			}
		case "nodes":
			if r.Nodes, err = reservationNodes(ctx, c, kv.val); err != nil {
				return e.fail(err)
			}
		case "nodecnt", "nodecount":
			n, err := strconv.ParseUint(kv.val, 10, 32)
			if err != nil || n == 0 {
				return e.errorf("NodeCnt: %q: want a positive number of nodes", kv.val)
			}
			r.NodeCount = uint32(n)
		case "partitionname", "partition":
			r.Partition = kv.val
		case "users", "user":
			r.Users = splitList(kv.val)
		case "accounts", "account":
			r.Accounts = splitList(kv.val)
		case "flags":
			if r.Flags, err = reservationFlags(kv.val); err != nil {
				return e.fail(err)
			}
		default:
			if why, ok := unsupportedResvKeys[kv.key]; ok {
				return e.errorf("%s: not supported by Loom: %s", kv.key, why)
			}
			return e.fail(&usageError{fmt.Sprintf("create reservation: unknown key %q", kv.key)})
		}
	}
	switch {
	case r.StartUnixMs == 0:
		return e.errorf("StartTime: is required (now, now+1hour, or YYYY-MM-DDTHH:MM[:SS])")
	case hasEnd && durationS > 0:
		return e.errorf("Duration and EndTime: give one of them")
	case durationS > 0:
		r.EndUnixMs = r.StartUnixMs + durationS*1000
	case !hasEnd:
		return e.errorf("Duration or EndTime: one is required")
	}
	if r.Name == "" {
		if r.Name, err = generatedReservationName(ctx, c, r); err != nil {
			return e.fail(err)
		}
	}
	if err := api.ValidateReservation(r); err != nil {
		return e.fail(err)
	}
	var resp *api.CreateReservationResponse
	err = c.do(ctx, true, func(ctx context.Context, cc *rpcclient.Conn) error {
		var err error
		resp, err = c.reservations(cc).CreateReservation(ctx, &api.CreateReservationRequest{Reservation: r})
		return err
	})
	if err != nil {
		return e.errorf("Error creating the reservation: %s", errorMessage(err))
	}
	c.wrote(resp.GetIndex())
	fmt.Fprintf(e.stdout, "Reservation created: %s\n", resp.GetReservation().GetName())
	return 0
}

// generatedReservationName is Slurm's name for a reservation created
// without one: the first user (or account), "_", a number not yet taken.
func generatedReservationName(ctx context.Context, c *client, r *api.Reservation) (string, error) {
	base := "resv"
	if len(r.Users) > 0 {
		base = r.Users[0]
	} else if len(r.Accounts) > 0 {
		base = r.Accounts[0]
	}
	existing, err := listReservations(ctx, c, "")
	if err != nil {
		return "", err
	}
	for n := 1; ; n++ {
		name := base + "_" + strconv.Itoa(n)
		if !slices.ContainsFunc(existing, func(x *api.Reservation) bool { return x.Name == name }) {
			return name, nil
		}
	}
}

func listReservations(ctx context.Context, c *client, name string) ([]*api.Reservation, error) {
	var resp *api.ListReservationsResponse
	err := c.do(ctx, true, func(ctx context.Context, cc *rpcclient.Conn) error {
		var err error
		resp, err = c.reservations(cc).ListReservations(ctx, &api.ListReservationsRequest{Name: name})
		return err
	})
	return resp.GetReservations(), err
}

// updateReservation is scontrol update ReservationName=NAME KEY=VALUE...
// Users and Accounts also take += and -=, as in Slurm.
func updateReservation(ctx context.Context, e *env, c *client, args []string) int {
	kvs, err := parseResvArgs(args)
	if err != nil {
		return e.fail(err)
	}
	req := &api.UpdateReservationRequest{}
	for _, kv := range kvs {
		if kv.key == "reservationname" {
			req.Name = kv.val
		}
	}
	if req.Name == "" {
		return e.fail(&usageError{"update: ReservationName=NAME is required"})
	}
	var cur *api.Reservation // read once, for += and -=
	current := func() (*api.Reservation, error) {
		if cur != nil {
			return cur, nil
		}
		rs, err := listReservations(ctx, c, req.Name)
		if err != nil {
			return nil, err
		}
		cur = rs[0]
		return cur, nil
	}
	edit := func(list []string, op string, vals []string) []string {
		switch op {
		case "+=":
			for _, v := range vals {
				if !slices.Contains(list, v) {
					list = append(list, v)
				}
			}
			return list
		case "-=":
			return slices.DeleteFunc(slices.Clone(list), func(x string) bool { return slices.Contains(vals, x) })
		}
		return vals
	}
	for _, kv := range kvs {
		if kv.op != "=" && kv.key != "users" && kv.key != "accounts" {
			return e.fail(&usageError{fmt.Sprintf("%s%s: only Users and Accounts take += and -=", kv.key, kv.op)})
		}
		switch kv.key {
		case "reservationname":
		case "starttime":
			ms, err := reservationTime(e, "StartTime", kv.val)
			if err != nil {
				return e.fail(err)
			}
			req.StartUnixMs = &ms
		case "endtime":
			ms, err := reservationTime(e, "EndTime", kv.val)
			if err != nil {
				return e.fail(err)
			}
			req.EndUnixMs = &ms
		case "duration":
			s, err := reservationDuration(kv.val)
			if err != nil {
				return e.fail(err)
			}
			req.DurationS = &s
		case "users", "user", "accounts", "account":
			var list []string
			if kv.op != "=" {
				r, err := current()
				if err != nil {
					return e.fail(err)
				}
				list = r.Users
				if strings.HasPrefix(kv.key, "account") {
					list = r.Accounts
				}
			}
			list = edit(list, kv.op, splitList(kv.val))
			if strings.HasPrefix(kv.key, "user") {
				req.Users, req.SetUsers = list, true
			} else {
				req.Accounts, req.SetAccounts = list, true
			}
		case "nodes":
			if req.Nodes, err = reservationNodes(ctx, c, kv.val); err != nil {
				return e.fail(err)
			}
		case "flags":
			if req.Flags, err = reservationFlags(kv.val); err != nil {
				return e.fail(err)
			}
			req.SetFlags = true
		default:
			if why, ok := unsupportedResvKeys[kv.key]; ok {
				return e.errorf("%s: not supported by Loom: %s", kv.key, why)
			}
			return e.fail(&usageError{fmt.Sprintf("update reservation: unknown key %q (Loom updates StartTime, EndTime, Duration, Nodes, Users, Accounts and Flags)", kv.key)})
		}
	}
	var resp *api.UpdateReservationResponse
	err = c.do(ctx, true, func(ctx context.Context, cc *rpcclient.Conn) error {
		var err error
		resp, err = c.reservations(cc).UpdateReservation(ctx, req)
		return err
	})
	if err != nil {
		return e.errorf("Error updating the reservation: %s", errorMessage(err))
	}
	c.wrote(resp.GetIndex())
	fmt.Fprintln(e.stdout, "Reservation updated.")
	return 0
}

// deleteReservation is scontrol delete ReservationName=NAME.
func deleteReservation(ctx context.Context, e *env, c *client, args []string) int {
	kvs, err := parseResvArgs(args)
	if err != nil {
		return e.fail(err)
	}
	var name string
	for _, kv := range kvs {
		if kv.key != "reservationname" {
			return e.fail(&usageError{fmt.Sprintf("delete: unexpected key %q (delete ReservationName=NAME)", kv.key)})
		}
		name = kv.val
	}
	if name == "" {
		return e.fail(&usageError{"delete: ReservationName=NAME is required"})
	}
	var resp *api.DeleteReservationResponse
	err = c.do(ctx, true, func(ctx context.Context, cc *rpcclient.Conn) error {
		var err error
		resp, err = c.reservations(cc).DeleteReservation(ctx, &api.DeleteReservationRequest{Name: name})
		return err
	})
	if err != nil {
		return e.errorf("Error deleting the reservation: %s", errorMessage(err))
	}
	c.wrote(resp.GetIndex())
	return 0
}

// showReservations is scontrol show reservation [NAME].
func showReservations(ctx context.Context, e *env, c *client, rest []string, o scontrolOpts) int {
	name := ""
	if len(rest) == 1 {
		name = rest[0]
	}
	rs, err := listReservations(ctx, c, name)
	if rpcclient.CodeOf(err) == rpcclient.NotFound {
		return e.errorf("Reservation %s not found", name)
	}
	if err != nil {
		return e.fail(err)
	}
	if o.json {
		if err := writeJSON(e.stdout, &api.ListReservationsResponse{Reservations: rs}); err != nil {
			return e.fail(err)
		}
		return 0
	}
	if len(rs) == 0 {
		fmt.Fprintln(e.stdout, "No reservations in the system")
		return 0
	}
	for _, r := range rs {
		reservationRecord(r, e).write(e.stdout, o.oneLiner)
	}
	return 0
}

// reservationState is ACTIVE in the window, INACTIVE otherwise.
func reservationState(r *api.Reservation, now time.Time) string {
	if r.ActiveAt(now.UnixMilli()) {
		return "ACTIVE"
	}
	return "INACTIVE"
}

func reservationRecord(r *api.Reservation, e *env) *keyValues {
	kv := &keyValues{}
	kv.line("ReservationName", r.Name, "StartTime", slurmTimestamp(r.StartUnixMs, e.loc),
		"EndTime", slurmTimestamp(r.EndUnixMs, e.loc), "Duration", clockDuration((r.EndUnixMs-r.StartUnixMs)/1000))
	kv.line("Nodes", null(api.CompressHostlist(r.Nodes)), "NodeCnt", strconv.Itoa(len(r.Nodes)), "CoreCnt", "0",
		"Features", "(null)", "PartitionName", null(r.Partition), "Flags", strings.Join(r.Flags, ","))
	kv.line("TRES", "(null)")
	kv.line("Users", null(strings.Join(r.Users, ",")), "Groups", "(null)", "Accounts", null(strings.Join(r.Accounts, ",")),
		"Licenses", "(null)", "State", reservationState(r, e.now()), "BurstBuffer", "(null)", "Watts", "n/a")
	kv.line("MaxStartDelay", "(null)")
	return kv
}

// writeReservationRows is sinfo -T: one row per reservation.
func writeReservationRows(w io.Writer, rs []*api.Reservation, e *env, noHeader bool) {
	rows := [][]string{}
	if !noHeader {
		rows = append(rows, []string{"RESV_NAME", "STATE", "START_TIME", "END_TIME", "DURATION", "NODELIST"})
	}
	for _, r := range rs {
		rows = append(rows, []string{r.Name, reservationState(r, e.now()), slurmTimestamp(r.StartUnixMs, e.loc),
			slurmTimestamp(r.EndUnixMs, e.loc), clockDuration((r.EndUnixMs - r.StartUnixMs) / 1000), api.CompressHostlist(r.Nodes)})
	}
	widths := make([]int, 6)
	for _, row := range rows {
		for i, c := range row {
			widths[i] = max(widths[i], len(c))
		}
	}
	for _, row := range rows {
		var b strings.Builder
		for i, c := range row {
			if i > 0 {
				b.WriteString("  ")
			}
			if i == 0 || i == len(row)-1 {
				fmt.Fprintf(&b, "%-*s", widths[i], c)
			} else {
				fmt.Fprintf(&b, "%*s", widths[i], c)
			}
		}
		fmt.Fprintln(w, strings.TrimRight(b.String(), " "))
	}
}

// sinfoReservations is sinfo -T/--reservation.
func sinfoReservations(ctx context.Context, e *env, noHeader bool) int {
	return withClient(e, func(c *client) int {
		rs, err := listReservations(ctx, c, "")
		if err != nil {
			return e.fail(err)
		}
		writeReservationRows(e.stdout, rs, e, noHeader)
		return 0
	})
}
