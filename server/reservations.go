package server

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/loomhpc/loom/api"
	"github.com/loomhpc/loom/api/apirpc"
	"github.com/loomhpc/loom/scheduler"
	"github.com/loomhpc/loom/state"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// reservationService serves advance reservations. Writes are for
// operators (methodAccess); the FSM checks each against the state it
// applies to.
type reservationService struct {
	apirpc.UnimplementedReservationServiceServer
	s *Server
}

func (rs *reservationService) CreateReservation(ctx context.Context, req *api.CreateReservationRequest) (*api.CreateReservationResponse, error) {
	r := proto.Clone(req.GetReservation()).(*api.Reservation)
	if r == nil {
		r = &api.Reservation{}
	}
	if err := api.ValidateReservation(r); err != nil {
		return nil, toStatus(err)
	}
	if resp, fwd, err := forward(rs.s, ctx, func(ctx context.Context, c *grpc.ClientConn) (*api.CreateReservationResponse, error) {
		return apirpc.NewReservationServiceClient(c).CreateReservation(ctx, req)
	}); fwd {
		return resp, err
	}
	id, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	r.CreatedBy = rs.s.userName(id.UID)
	res, err := rs.s.apply(ctx, state.CmdReservation, &api.ReservationCommand{Op: api.ReservationOp_RESERVATION_CREATE, Reservation: r, NowUnixMs: nowMs()})
	if err != nil {
		return nil, toStatus(err)
	}
	if res.Err != nil {
		return nil, toStatus(res.Err)
	}
	rs.s.log.Info("reservation created", "reservation", r.Name, "by", r.CreatedBy, "index", res.Index)
	return &api.CreateReservationResponse{Reservation: rs.s.State().Reservation(r.Name), Index: res.Index}, nil
}

func (rs *reservationService) UpdateReservation(ctx context.Context, req *api.UpdateReservationRequest) (*api.UpdateReservationResponse, error) {
	if req.GetName() == "" {
		return nil, status.Error(codes.InvalidArgument, "ReservationName: is required")
	}
	if resp, fwd, err := forward(rs.s, ctx, func(ctx context.Context, c *grpc.ClientConn) (*api.UpdateReservationResponse, error) {
		return apirpc.NewReservationServiceClient(c).UpdateReservation(ctx, req)
	}); fwd {
		return resp, err
	}
	old := rs.s.State().Reservation(req.Name)
	if old == nil {
		return nil, toStatus(fmt.Errorf("reservation %q: %w", req.Name, state.ErrReservationNotFound))
	}
	r := mergeReservation(old, req)
	// The FSM refuses the update if old changed meanwhile in a way that
	// conflicts; fields set by a concurrent update are overwritten, as
	// two scontrol updates would be.
	res, err := rs.s.apply(ctx, state.CmdReservation, &api.ReservationCommand{Op: api.ReservationOp_RESERVATION_UPDATE, Reservation: r, NowUnixMs: nowMs()})
	if err != nil {
		return nil, toStatus(err)
	}
	if res.Err != nil {
		return nil, toStatus(res.Err)
	}
	return &api.UpdateReservationResponse{Reservation: rs.s.State().Reservation(r.Name), Index: res.Index}, nil
}

// mergeReservation is old with the changes req asks for. A duration
// counts from the (new) start, as scontrol's Duration= does.
func mergeReservation(old *api.Reservation, req *api.UpdateReservationRequest) *api.Reservation {
	r := proto.Clone(old).(*api.Reservation)
	length := r.EndUnixMs - r.StartUnixMs
	if req.StartUnixMs != nil {
		r.StartUnixMs = *req.StartUnixMs
		r.EndUnixMs = r.StartUnixMs + length // moving the start keeps the duration, as in Slurm
	}
	if req.EndUnixMs != nil {
		r.EndUnixMs = *req.EndUnixMs
	}
	if req.DurationS != nil {
		r.EndUnixMs = r.StartUnixMs + *req.DurationS*1000
	}
	if req.SetUsers {
		r.Users = req.Users
	}
	if req.SetAccounts {
		r.Accounts = req.Accounts
	}
	if len(req.Nodes) > 0 {
		r.Nodes, r.NodeCount = req.Nodes, 0
	}
	if req.SetFlags {
		r.Flags = req.Flags
	}
	return r
}

func (rs *reservationService) DeleteReservation(ctx context.Context, req *api.DeleteReservationRequest) (*api.DeleteReservationResponse, error) {
	if req.GetName() == "" {
		return nil, status.Error(codes.InvalidArgument, "ReservationName: is required")
	}
	if resp, fwd, err := forward(rs.s, ctx, func(ctx context.Context, c *grpc.ClientConn) (*api.DeleteReservationResponse, error) {
		return apirpc.NewReservationServiceClient(c).DeleteReservation(ctx, req)
	}); fwd {
		return resp, err
	}
	res, err := rs.s.apply(ctx, state.CmdReservation, &api.ReservationCommand{Op: api.ReservationOp_RESERVATION_DELETE,
		Reservation: &api.Reservation{Name: req.Name}, NowUnixMs: nowMs()})
	if err != nil {
		return nil, toStatus(err)
	}
	if res.Err != nil {
		return nil, toStatus(res.Err)
	}
	rs.s.log.Info("reservation deleted", "reservation", req.Name, "by", callerName(ctx), "index", res.Index)
	return &api.DeleteReservationResponse{Index: res.Index}, nil
}

func (rs *reservationService) ListReservations(ctx context.Context, req *api.ListReservationsRequest) (*api.ListReservationsResponse, error) {
	snap := rs.s.State()
	resp := &api.ListReservationsResponse{Index: snap.Index()}
	if req.GetName() != "" {
		r := snap.Reservation(req.Name)
		if r == nil {
			return nil, toStatus(fmt.Errorf("reservation %q: %w", req.Name, state.ErrReservationNotFound))
		}
		resp.Reservations = []*api.Reservation{r}
		return resp, nil
	}
	resp.Reservations = slices.Collect(snap.Reservations())
	return resp, nil
}

// checkReservation refuses a submit that names a reservation which does
// not exist, has ended, or does not list the submitter's user or account.
// req.User is the name the connection proved (authorizeSubmit).
func checkReservation(snap *state.View, req *api.SubmitRequest, now time.Time) error {
	name := req.GetSpec().GetReservation()
	if name == "" {
		return nil
	}
	r := snap.Reservation(name)
	if r == nil || r.EndUnixMs <= now.UnixMilli() {
		return status.Errorf(codes.InvalidArgument, "--reservation=%s: no such reservation (scontrol show reservation lists them)", name)
	}
	account := scheduler.AccountOf(&api.Job{Spec: req.Spec, User: req.User})
	if !r.Allows(req.User, account) {
		return status.Errorf(codes.PermissionDenied, "--reservation=%s: user %s with account %s may not use it (it allows users %v, accounts %v)",
			name, req.User, account, r.Users, r.Accounts)
	}
	return nil
}

// liveReservations are snap's reservations whose end is after now: what
// a scheduling cycle at now honours.
func liveReservations(snap *state.View, now time.Time) []*api.Reservation {
	var live []*api.Reservation
	for r := range snap.Reservations() {
		if r.EndUnixMs > now.UnixMilli() {
			live = append(live, r)
		}
	}
	return live
}

// expireReservations removes, on the leader, the reservations whose end
// has passed at now, one command each. Their jobs that never started then
// pend as ReservationDeleted.
func (s *Server) expireReservations(ctx context.Context, snap *state.View, now time.Time) {
	for r := range snap.Reservations() {
		if r.EndUnixMs > now.UnixMilli() {
			continue
		}
		_, err := s.apply(ctx, state.CmdReservation, &api.ReservationCommand{Op: api.ReservationOp_RESERVATION_EXPIRE,
			Reservation: &api.Reservation{Name: r.Name}, NowUnixMs: now.UnixMilli()})
		if err != nil {
			if ctx.Err() == nil {
				s.log.Warn("ended reservation not removed", "reservation", r.Name, "err", err)
			}
			continue
		}
		s.log.Info("reservation ended", "reservation", r.Name)
	}
}
