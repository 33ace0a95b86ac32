//go:build e2e

// Package reservation runs advance reservations end to end: a real
// server and two agents, scontrol from bin/loom as root (an operator on
// the server's local socket) creating, showing and deleting a
// reservation, and the unprivileged test users (cluster.UserA, UserB)
// submitting as the kernel proves them on that socket. Alice's job
// without the reservation keeps off the reserved node; hers with it runs
// there; bob can neither create a reservation nor use alice's. It needs
// root and the test users; without them it skips, or fails under
// LOOM_E2E_REQUIRE=1.
package reservation

import (
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/loomhpc/loom/api"
	"github.com/loomhpc/loom/api/apirpc"
	"github.com/loomhpc/loom/test/cluster"
)

// scontrol runs bin/loom's scontrol as the test's user (root: an
// operator) against addr and returns what it printed.
func scontrol(t *testing.T, addr string, args ...string) string {
	t.Helper()
	cmd := exec.Command(cluster.Binary(t), append([]string{"slurm", "scontrol"}, args...)...)
	cmd.Env = append(os.Environ(), "LOOM_ADDR="+addr)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("scontrol %q: %v\n%s", args, err, out)
	}
	return string(out)
}

func TestReservationKeepsOutsidersOff(t *testing.T) {
	alice, bob := cluster.LookupUser(t, cluster.UserA), cluster.LookupUser(t, cluster.UserB)
	dir := cluster.OpenDir(t, "loom-resv-")
	s := cluster.StartServer(t, dir, "s1")
	n1 := cluster.StartAgent(t, dir, "node1", "pcie-4", 33200, s)
	n2 := cluster.StartAgent(t, dir, "node2", "pcie-4", 33300, s)
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(s.Tail())
			t.Log(n1.Tail())
			t.Log(n2.Tail())
		}
	})
	_, nodes := cluster.Client(t, s.Client())
	cluster.WaitFor(t, "two registered nodes", 30*time.Second, func() bool {
		r, err := nodes.ListNodes(cluster.Ctx(t), &api.ListNodesRequest{})
		return err == nil && len(r.Nodes) == 2
	})

	out := scontrol(t, s.Client(), "create", "reservation", "ReservationName=ws", "StartTime=now", "Duration=60",
		"Nodes=node2", "Users="+alice.Name)
	if !strings.Contains(out, "Reservation created: ws") {
		t.Fatalf("scontrol create reservation printed %q", out)
	}
	if out := scontrol(t, s.Client(), "show", "reservation", "ws"); !strings.Contains(out, "ReservationName=ws ") ||
		!strings.Contains(out, "Nodes=node2 ") || !strings.Contains(out, "Users="+alice.Name+" ") || !strings.Contains(out, "State=ACTIVE") {
		t.Fatalf("scontrol show reservation ws printed\n%s", out)
	}

	// Bob is no operator: the connection says so, whatever he sends.
	bobConn := cluster.ConnAs(t, s.Client(), bob)
	_, err := apirpc.NewReservationServiceClient(bobConn).CreateReservation(cluster.Ctx(t), &api.CreateReservationRequest{
		Reservation: &api.Reservation{Name: "mine", StartUnixMs: time.Now().UnixMilli(), EndUnixMs: time.Now().Add(time.Hour).UnixMilli(),
			Nodes: []string{"node1"}, Users: []string{bob.Name}, CreatedBy: "root"}})
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("bob creates a reservation: %v, want PermissionDenied", err)
	}
	spec := func(name, resv string) *api.JobSpec {
		return &api.JobSpec{Name: name, GpusPerNode: 4, Script: "#!/bin/sh\nsleep 120\n", WorkingDir: dir, Reservation: resv}
	}
	bobJobs := apirpc.NewJobServiceClient(bobConn)
	if _, err := bobJobs.Submit(cluster.Ctx(t), &api.SubmitRequest{Spec: spec("b", "ws"), User: alice.Name, Uid: alice.UID}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("bob submits to alice's reservation claiming to be alice: %v, want PermissionDenied", err)
	}

	// Alice fills node1 with one job, then submits another without the
	// reservation (it must wait, though node2 is idle) and one with it
	// (it runs on node2).
	jobs, _ := cluster.ClientAs(t, s.Client(), alice)
	outside := cluster.SubmitRetrying(t, jobs, &api.SubmitRequest{Spec: spec("outside", ""), IdempotencyToken: "outside"}, 10*time.Second)
	cluster.WaitFor(t, "the first job to run on node1", 30*time.Second, func() bool {
		j := cluster.Job(t, jobs, outside)
		return j != nil && j.State == api.JobState_RUNNING
	})
	if got := cluster.Job(t, jobs, outside).Allocation.Nodes; !slices.Equal(got, []string{"node1"}) {
		t.Fatalf("the job without the reservation runs on %v, want node1", got)
	}
	waiting := cluster.SubmitRetrying(t, jobs, &api.SubmitRequest{Spec: spec("waiting", ""), IdempotencyToken: "waiting"}, 10*time.Second)
	inside := cluster.SubmitRetrying(t, jobs, &api.SubmitRequest{Spec: spec("inside", "ws"), IdempotencyToken: "inside"}, 10*time.Second)
	cluster.WaitFor(t, "the reservation's job to run", 30*time.Second, func() bool {
		j := cluster.Job(t, jobs, inside)
		return j != nil && j.State == api.JobState_RUNNING
	})
	if got := cluster.Job(t, jobs, inside).Allocation.Nodes; !slices.Equal(got, []string{"node2"}) {
		t.Fatalf("the reservation's job runs on %v, want node2", got)
	}
	// The outsider has been through scheduling cycles since it was
	// submitted (the reservation's job was placed after it): it still
	// pends.
	if j := cluster.Job(t, jobs, waiting); j.State != api.JobState_PENDING {
		t.Fatalf("the job without the reservation is %s on %v while node2 is reserved, want PENDING", j.State, j.GetAllocation().GetNodes())
	}
	if out := scontrol(t, s.Client(), "-o", "show", "job", strconv.FormatUint(inside, 10)); !strings.Contains(out, "Reservation=ws") {
		t.Fatalf("scontrol show job %d printed %q, want Reservation=ws", inside, out)
	}

	// Deleting the reservation frees node2 for everyone: once the
	// reservation's job ends, the outsider runs there.
	scontrol(t, s.Client(), "delete", "ReservationName=ws")
	if _, err := jobs.Cancel(cluster.Ctx(t), &api.CancelRequest{JobIds: []uint64{inside}}); err != nil {
		t.Fatal(err)
	}
	cluster.WaitFor(t, "the outsider to run on node2 after the delete", 30*time.Second, func() bool {
		j := cluster.Job(t, jobs, waiting)
		return j != nil && j.State == api.JobState_RUNNING && slices.Equal(j.Allocation.Nodes, []string{"node2"})
	})
	if out := scontrol(t, s.Client(), "show", "reservation"); !strings.Contains(out, "No reservations in the system") {
		t.Fatalf("scontrol show reservation after the delete printed %q", out)
	}
	jobs.Cancel(cluster.Ctx(t), &api.CancelRequest{JobIds: []uint64{outside, waiting}})
}
