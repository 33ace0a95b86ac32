package server

import (
	"slices"
	"testing"
	"time"

	"github.com/loomhpc/loom/api"
	"github.com/loomhpc/loom/api/apirpc"
	"github.com/loomhpc/loom/internal/harness"
	"google.golang.org/grpc/codes"
)

// TestReservationsOperatorsCreateUsersSubmit: only an operator (as the
// connection proves, whatever the request says) creates, updates and
// deletes a reservation; any user lists them; a submit naming an unknown
// reservation, or one the user may not use, is refused; and one the user
// may use is accepted.
func TestReservationsOperatorsCreateUsersSubmit(t *testing.T) {
	e := newAuthzEnv(t)
	now := time.Now()
	r := &api.Reservation{Name: "ws", StartUnixMs: now.Add(time.Hour).UnixMilli(), EndUnixMs: now.Add(2 * time.Hour).UnixMilli(),
		Nodes: []string{"node1"}, Users: []string{"alice"}, CreatedBy: "alice"}
	_, err := apirpc.NewReservationServiceClient(e.user(alice)).CreateReservation(ctx(t), &api.CreateReservationRequest{Reservation: r})
	wantCode(t, "alice creates a reservation", err, codes.PermissionDenied)
	opc := apirpc.NewReservationServiceClient(e.user(op))
	resp, err := opc.CreateReservation(ctx(t), &api.CreateReservationRequest{Reservation: r})
	if err != nil {
		t.Fatalf("the operator creates a reservation: %v", err)
	}
	if resp.Reservation.CreatedBy != "op" {
		t.Errorf("CreatedBy = %q, want op (from the connection, not the request)", resp.Reservation.CreatedBy)
	}
	_, err = opc.CreateReservation(ctx(t), &api.CreateReservationRequest{Reservation: r})
	wantCode(t, "creating ws twice", err, codes.AlreadyExists)
	bad := &api.Reservation{Name: "x", StartUnixMs: r.StartUnixMs, EndUnixMs: r.EndUnixMs, Nodes: []string{"nosuch"}, Users: []string{"bob"}}
	_, err = opc.CreateReservation(ctx(t), &api.CreateReservationRequest{Reservation: bad})
	wantCode(t, "a reservation of an unknown node", err, codes.NotFound)

	list, err := apirpc.NewReservationServiceClient(e.user(bob)).ListReservations(ctx(t), &api.ListReservationsRequest{})
	if err != nil || len(list.Reservations) != 1 || list.Reservations[0].Name != "ws" {
		t.Fatalf("bob lists reservations: %v, %v, want ws", list, err)
	}

	spec := func() *api.JobSpec { return &api.JobSpec{Script: "x", Hold: true, Reservation: "ws"} }
	_, err = apirpc.NewJobServiceClient(e.user(bob)).Submit(ctx(t), &api.SubmitRequest{Spec: spec(), User: "alice"})
	wantCode(t, "bob submits to alice's reservation claiming to be alice", err, codes.PermissionDenied)
	none := spec()
	none.Reservation = "nosuch"
	_, err = apirpc.NewJobServiceClient(e.user(alice)).Submit(ctx(t), &api.SubmitRequest{Spec: none})
	wantCode(t, "a submit naming an unknown reservation", err, codes.InvalidArgument)
	id := e.submit(alice, &api.SubmitRequest{Spec: spec()})
	if got := e.s.State().Job(id).Spec.Reservation; got != "ws" {
		t.Errorf("job's reservation = %q, want ws", got)
	}
	got, err := apirpc.NewJobServiceClient(e.user(bob)).GetJob(ctx(t), &api.GetJobRequest{JobId: id})
	if err != nil || got.Job.Spec.Reservation != "ws" {
		t.Errorf("bob's view of alice's job: reservation %q (%v), want ws", got.GetJob().GetSpec().GetReservation(), err)
	}

	_, err = apirpc.NewReservationServiceClient(e.user(bob)).UpdateReservation(ctx(t), &api.UpdateReservationRequest{Name: "ws", Users: []string{"bob"}, SetUsers: true})
	wantCode(t, "bob updates the reservation", err, codes.PermissionDenied)
	up, err := opc.UpdateReservation(ctx(t), &api.UpdateReservationRequest{Name: "ws", Users: []string{"alice", "bob"}, SetUsers: true, DurationS: ptr(int64(1800))})
	if err != nil {
		t.Fatalf("the operator updates ws: %v", err)
	}
	if !slices.Equal(up.Reservation.Users, []string{"alice", "bob"}) || up.Reservation.EndUnixMs != r.StartUnixMs+1800_000 {
		t.Errorf("after update ws = %v, want users alice,bob and 30 minutes", up.Reservation)
	}
	e.submit(bob, &api.SubmitRequest{Spec: spec()})

	_, err = apirpc.NewReservationServiceClient(e.user(alice)).DeleteReservation(ctx(t), &api.DeleteReservationRequest{Name: "ws"})
	wantCode(t, "alice deletes the reservation", err, codes.PermissionDenied)
	if _, err := opc.DeleteReservation(ctx(t), &api.DeleteReservationRequest{Name: "ws"}); err != nil {
		t.Fatalf("the operator deletes ws: %v", err)
	}
	if e.s.State().Reservation("ws") != nil {
		t.Error("ws still there after delete")
	}
}

func ptr[T any](v T) *T { return &v }

// TestReservationEndsAndItsJobsPend: a job whose reservation an operator
// deletes pends as ReservationDeleted, and the leader removes a
// reservation whose end has passed.
func TestReservationEndsAndItsJobsPend(t *testing.T) {
	e := newAuthzEnv(t)
	now := time.Now()
	future := func(name string) *api.Reservation {
		return &api.Reservation{Name: name, StartUnixMs: now.Add(time.Hour).UnixMilli(), EndUnixMs: now.Add(2 * time.Hour).UnixMilli(),
			Nodes: []string{"node1"}, Users: []string{"alice"}}
	}
	opc := apirpc.NewReservationServiceClient(e.user(op))
	if _, err := opc.CreateReservation(ctx(t), &api.CreateReservationRequest{Reservation: future("later")}); err != nil {
		t.Fatal(err)
	}
	id := e.submit(alice, &api.SubmitRequest{Spec: &api.JobSpec{Script: "x", Reservation: "later"}})
	harness.WaitFor(t, "the job to wait for its reservation", 10*time.Second, func() bool {
		return e.s.State().Job(id).Reason == "Reservation"
	})
	if _, err := opc.DeleteReservation(ctx(t), &api.DeleteReservationRequest{Name: "later"}); err != nil {
		t.Fatal(err)
	}
	harness.WaitFor(t, "the job to pend as ReservationDeleted", 10*time.Second, func() bool {
		j := e.s.State().Job(id)
		return j.State == api.JobState_PENDING && j.Reason == "ReservationDeleted"
	})

	// A window that ends in a moment: the leader expires it.
	if _, err := opc.CreateReservation(ctx(t), &api.CreateReservationRequest{Reservation: future("short")}); err != nil {
		t.Fatal(err)
	}
	start, end := time.Now().Add(-time.Minute).UnixMilli(), time.Now().Add(200*time.Millisecond).UnixMilli()
	if _, err := opc.UpdateReservation(ctx(t), &api.UpdateReservationRequest{Name: "short", StartUnixMs: &start, EndUnixMs: &end}); err != nil {
		t.Fatal(err)
	}
	harness.WaitFor(t, "the leader to remove the ended reservation", 10*time.Second, func() bool {
		return e.s.State().Reservation("short") == nil
	})
}
