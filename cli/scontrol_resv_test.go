package cli

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/loomhpc/loom/api"
	"github.com/loomhpc/loom/api/apirpc"
)

// fakeResv is an in-memory ReservationService beside a fakeServer's
// NodeService, recording what it is asked.
type fakeResv struct {
	apirpc.UnimplementedReservationServiceServer
	mu      sync.Mutex
	resv    []*api.Reservation
	creates []*api.Reservation
	updates []*api.UpdateReservationRequest
	deletes []string
}

func (f *fakeResv) CreateReservation(_ context.Context, req *api.CreateReservationRequest) (*api.CreateReservationResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.creates = append(f.creates, proto.Clone(req.Reservation).(*api.Reservation))
	return &api.CreateReservationResponse{Reservation: req.Reservation, Index: 3}, nil
}

func (f *fakeResv) UpdateReservation(_ context.Context, req *api.UpdateReservationRequest) (*api.UpdateReservationResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.updates = append(f.updates, proto.Clone(req).(*api.UpdateReservationRequest))
	return &api.UpdateReservationResponse{Index: 4}, nil
}

func (f *fakeResv) DeleteReservation(_ context.Context, req *api.DeleteReservationRequest) (*api.DeleteReservationResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.deletes = append(f.deletes, req.Name)
	return &api.DeleteReservationResponse{Index: 5}, nil
}

func (f *fakeResv) ListReservations(_ context.Context, req *api.ListReservationsRequest) (*api.ListReservationsResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if req.Name == "" {
		return &api.ListReservationsResponse{Reservations: f.resv}, nil
	}
	for _, r := range f.resv {
		if r.Name == req.Name {
			return &api.ListReservationsResponse{Reservations: []*api.Reservation{r}}, nil
		}
	}
	return nil, status.Errorf(codes.NotFound, "reservation %q: no such reservation", req.Name)
}

func (f *fakeResv) start(t *testing.T, nodes *fakeServer) string {
	t.Helper()
	return serveGRPC(t, func(srv *grpc.Server) {
		apirpc.RegisterReservationServiceServer(srv, f)
		apirpc.RegisterNodeServiceServer(srv, nodes)
	})
}

// TestScontrolCreateReservation: the keys as scontrol(1) documents them,
// and what the server is asked.
func TestScontrolCreateReservation(t *testing.T) {
	start := time.Date(2024, 5, 1, 14, 0, 0, 0, time.UTC).UnixMilli()
	nodes := &fakeServer{nodes: []*api.NodeInfo{{Node: &api.Node{Name: "n1"}}, {Node: &api.Node{Name: "n2"}}}}
	tests := []struct {
		name string
		args []string
		want *api.Reservation
	}{
		{"nodes and duration", []string{"create", "reservation", "ReservationName=maint", "StartTime=2024-05-01T14:00", "Duration=2:00:00",
			"Nodes=gpu[01-04]", "Users=alice,bob", "Flags=maint,ignore_jobs"},
			&api.Reservation{Name: "maint", StartUnixMs: start, EndUnixMs: start + 2*3600_000, Nodes: []string{"gpu01", "gpu02", "gpu03", "gpu04"},
				Users: []string{"alice", "bob"}, Flags: []string{"MAINT", "IGNORE_JOBS"}}},
		{"minutes, node count, partition, accounts", []string{"create", "res", "reservationname=ws", "starttime=now", "duration=120",
			"NodeCnt=4", "PartitionName=gpu", "Accounts=proj"},
			&api.Reservation{Name: "ws", StartUnixMs: testNow.UnixMilli(), EndUnixMs: testNow.Add(2 * time.Hour).UnixMilli(), NodeCount: 4,
				Partition: "gpu", Accounts: []string{"proj"}}},
		{"days and end time, all nodes", []string{"create", "ReservationName=big", "StartTime=2024-05-01T14:00:00", "EndTime=2024-05-02T14:00:00",
			"Nodes=ALL", "Users=alice"},
			&api.Reservation{Name: "big", StartUnixMs: start, EndUnixMs: start + 24*3600_000, Nodes: []string{"n1", "n2"}, Users: []string{"alice"}}},
		{"duration in days", []string{"create", "reservation", "ReservationName=d", "StartTime=now+1hour", "Duration=1-00:00:00", "Nodes=n1", "Users=alice"},
			&api.Reservation{Name: "d", StartUnixMs: testNow.Add(time.Hour).UnixMilli(), EndUnixMs: testNow.Add(25 * time.Hour).UnixMilli(),
				Nodes: []string{"n1"}, Users: []string{"alice"}}},
		{"generated name", []string{"create", "res", "StartTime=now", "Duration=10", "Nodes=n1", "Users=carol"},
			&api.Reservation{Name: "carol_1", StartUnixMs: testNow.UnixMilli(), EndUnixMs: testNow.Add(10 * time.Minute).UnixMilli(),
				Nodes: []string{"n1"}, Users: []string{"carol"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeResv{}
			te := newTestEnv("scontrol", f.start(t, nodes))
			if code := te.run(t, tt.args...); code != 0 {
				t.Fatalf("scontrol %q exited %d: %s", tt.args, code, te.err)
			}
			if len(f.creates) != 1 || !proto.Equal(f.creates[0], tt.want) {
				t.Fatalf("scontrol %q asked to create %v, want %v", tt.args, f.creates, tt.want)
			}
			if got, want := te.out.String(), "Reservation created: "+tt.want.Name+"\n"; got != want {
				t.Errorf("scontrol %q printed %q, want %q", tt.args, got, want)
			}
		})
	}
}

// TestScontrolReservationErrors: what is refused before any call, with
// the key named.
func TestScontrolReservationErrors(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"create", "reservation", "ReservationName=a", "Duration=10", "Nodes=n1", "Users=u"}, "StartTime: is required"},
		{[]string{"create", "reservation", "ReservationName=a", "StartTime=now", "Nodes=n1", "Users=u"}, "Duration or EndTime: one is required"},
		{[]string{"create", "reservation", "ReservationName=a", "StartTime=now", "Duration=10", "EndTime=now+1hour", "Nodes=n1", "Users=u"}, "give one of them"},
		{[]string{"create", "reservation", "ReservationName=a", "StartTime=now", "Duration=10", "Nodes=n1", "Users=u", "Flags=FLEX"}, `Flags: "FLEX" is not supported`},
		{[]string{"create", "reservation", "ReservationName=a", "StartTime=now", "Duration=10", "CoreCnt=4", "Users=u"}, "corecnt: not supported by Loom"},
		{[]string{"create", "reservation", "ReservationName=a", "StartTime=now", "Duration=10", "Nodes=n1"}, "Users: give Users= or Accounts="},
		{[]string{"create", "reservation", "ReservationName=a", "StartTime=now", "Duration=UNLIMITED", "Nodes=n1", "Users=u"}, "Duration: \"UNLIMITED\": a reservation needs an end"},
		{[]string{"create", "reservation", "ReservationName=a", "StartTime=when", "Duration=10", "Nodes=n1", "Users=u"}, "StartTime: "},
		{[]string{"update", "ReservationName=a", "NodeCnt+=2"}, "only Users and Accounts take += and -="},
		{[]string{"delete", "ReservationName=a", "Users=u"}, `delete: unexpected key "users"`},
	}
	for _, tt := range tests {
		f := &fakeResv{}
		te := newTestEnv("scontrol", f.start(t, &fakeServer{}))
		if code := te.run(t, tt.args...); code == 0 || !strings.Contains(te.err.String(), tt.want) {
			t.Errorf("scontrol %q exited %d, stderr %q, want an error containing %q", tt.args, code, te.err, tt.want)
		}
		if len(f.creates)+len(f.updates)+len(f.deletes) != 0 {
			t.Errorf("scontrol %q reached the server", tt.args)
		}
	}
}

// TestScontrolUpdateDeleteReservation: update's keys, += and -= against
// the current lists, and delete.
func TestScontrolUpdateDeleteReservation(t *testing.T) {
	f := &fakeResv{resv: []*api.Reservation{{Name: "ws", Users: []string{"alice", "bob"}, Accounts: []string{"proj"}}}}
	te := newTestEnv("scontrol", f.start(t, &fakeServer{}))
	if code := te.run(t, "update", "ReservationName=ws", "Users+=carol", "Accounts-=proj", "Duration=30"); code != 0 {
		t.Fatalf("update exited %d: %s", code, te.err)
	}
	d := int64(1800)
	want := &api.UpdateReservationRequest{Name: "ws", Users: []string{"alice", "bob", "carol"}, SetUsers: true, SetAccounts: true, DurationS: &d}
	if len(f.updates) != 1 || !proto.Equal(f.updates[0], want) {
		t.Fatalf("update asked %v, want %v", f.updates, want)
	}
	if got := te.out.String(); got != "Reservation updated.\n" {
		t.Errorf("update printed %q", got)
	}
	te = newTestEnv("scontrol", f.start(t, &fakeServer{}))
	if code := te.run(t, "delete", "ReservationName=ws"); code != 0 || !slices.Equal(f.deletes, []string{"ws"}) {
		t.Fatalf("delete exited %d (%s), deleted %v", code, te.err, f.deletes)
	}
}

// TestScontrolShowReservationAndSinfoT: Slurm's record layout and sinfo
// -T's table.
func TestScontrolShowReservationAndSinfoT(t *testing.T) {
	start := time.Date(2024, 5, 1, 11, 0, 0, 0, time.UTC) // active at testNow (12:00)
	f := &fakeResv{resv: []*api.Reservation{
		{Name: "maint", StartUnixMs: start.UnixMilli(), EndUnixMs: start.Add(2 * time.Hour).UnixMilli(), Nodes: []string{"gpu01", "gpu02"},
			Users: []string{"alice", "bob"}, Flags: []string{"MAINT", "IGNORE_JOBS"}},
		{Name: "ws", StartUnixMs: start.Add(24 * time.Hour).UnixMilli(), EndUnixMs: start.Add(48 * time.Hour).UnixMilli(), Nodes: []string{"gpu03"},
			Accounts: []string{"proj"}, Partition: "gpu"},
	}}
	addr := f.start(t, &fakeServer{})
	te := newTestEnv("scontrol", addr)
	if code := te.run(t, "show", "reservation", "maint"); code != 0 {
		t.Fatalf("show reservation exited %d: %s", code, te.err)
	}
	want := `ReservationName=maint StartTime=2024-05-01T11:00:00 EndTime=2024-05-01T13:00:00 Duration=02:00:00
   Nodes=gpu[01-02] NodeCnt=2 CoreCnt=0 Features=(null) PartitionName=(null) Flags=MAINT,IGNORE_JOBS
   TRES=(null)
   Users=alice,bob Groups=(null) Accounts=(null) Licenses=(null) State=ACTIVE BurstBuffer=(null) Watts=n/a
   MaxStartDelay=(null)

`
	if got := te.out.String(); got != want {
		t.Errorf("show reservation maint printed\n%s\nwant\n%s", got, want)
	}
	te = newTestEnv("scontrol", addr)
	if code := te.run(t, "show", "res", "nosuch"); code == 0 || !strings.Contains(te.err.String(), "Reservation nosuch not found") {
		t.Errorf("show res nosuch exited %d, stderr %q", code, te.err)
	}
	te = newTestEnv("sinfo", addr)
	if code := te.run(t, "-T"); code != 0 {
		t.Fatalf("sinfo -T exited %d: %s", code, te.err)
	}
	wantT := `RESV_NAME     STATE           START_TIME             END_TIME    DURATION  NODELIST
maint        ACTIVE  2024-05-01T11:00:00  2024-05-01T13:00:00    02:00:00  gpu[01-02]
ws         INACTIVE  2024-05-02T11:00:00  2024-05-03T11:00:00  1-00:00:00  gpu03
`
	if got := te.out.String(); got != wantT {
		t.Errorf("sinfo -T printed\n%s\nwant\n%s", got, wantT)
	}
}

// TestSbatchReservation: --reservation and SBATCH_RESERVATION set the
// spec's reservation.
func TestSbatchReservation(t *testing.T) {
	f := &fakeServer{}
	te := newTestEnv("sbatch", f.start(t))
	if got := submitted(t, te, f, "--reservation=maint", "--wrap=true").GetReservation(); got != "maint" {
		t.Errorf("sbatch --reservation=maint: spec reservation %q, want maint", got)
	}
	f = &fakeServer{}
	te = newTestEnv("sbatch", f.start(t), "SBATCH_RESERVATION=ws")
	if got := submitted(t, te, f, "--wrap=true").GetReservation(); got != "ws" {
		t.Errorf("SBATCH_RESERVATION=ws: spec reservation %q, want ws", got)
	}
}

// TestShowJobReservation: scontrol show job and squeue %v show a job's
// reservation.
func TestShowJobReservation(t *testing.T) {
	j := &api.Job{Id: 3, Spec: &api.JobSpec{Reservation: "maint"}, State: api.JobState_PENDING}
	var b strings.Builder
	jobRecord(j, newTestEnv("scontrol", "").env).write(&b, true)
	if !strings.Contains(b.String(), " Reservation=maint ") {
		t.Errorf("scontrol show job of a job in maint: %q has no Reservation=maint", b.String())
	}
	if got := squeueFields['v'].value(j, testNow, time.UTC); got != "maint" {
		t.Errorf("squeue %%v = %q, want maint", got)
	}
}

// TestIsReservationCommand: which scontrol words go to the reservation
// commands.
func TestIsReservationCommand(t *testing.T) {
	tests := []struct {
		args []string
		want bool
	}{
		{[]string{"reservation", "ReservationName=a"}, true},
		{[]string{"res", "StartTime=now"}, true},
		{[]string{"ReservationName=a", "EndTime=now+1hour"}, true},
		{[]string{"jobid=5", "Reservation=a"}, false},
		{[]string{"nodename=n1", "state=drain"}, false},
	}
	for _, tt := range tests {
		if got := isReservationCommand(tt.args); got != tt.want {
			t.Errorf("isReservationCommand(%q) = %v, want %v", tt.args, got, tt.want)
		}
	}
}
