package server

import (
	"testing"

	"github.com/loomhpc/loom/api"
	"github.com/loomhpc/loom/auth"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// fill sets every field of m, and of the messages it holds down to depth,
// to a value that is not the zero value.
func fill(m protoreflect.Message, depth int) {
	fields := m.Descriptor().Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		switch {
		case fd.IsMap():
			mp := m.Mutable(fd).Map()
			v := sample(fd.MapValue(), mp.NewValue(), depth)
			mp.Set(sample(fd.MapKey(), protoreflect.Value{}, depth).MapKey(), v)
		case fd.IsList():
			l := m.Mutable(fd).List()
			l.Append(sample(fd, l.NewElement(), depth))
		case fd.Message() != nil:
			if depth > 0 {
				fill(m.Mutable(fd).Message(), depth-1)
			}
		default:
			m.Set(fd, sample(fd, protoreflect.Value{}, depth))
		}
	}
}

// sample is a non-zero value of fd's kind; for a message, fresh filled.
func sample(fd protoreflect.FieldDescriptor, fresh protoreflect.Value, depth int) protoreflect.Value {
	switch fd.Kind() {
	case protoreflect.BoolKind:
		return protoreflect.ValueOfBool(true)
	case protoreflect.EnumKind:
		return protoreflect.ValueOfEnum(1)
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return protoreflect.ValueOfInt32(7)
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return protoreflect.ValueOfInt64(7)
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return protoreflect.ValueOfUint32(7)
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return protoreflect.ValueOfUint64(7)
	case protoreflect.FloatKind:
		return protoreflect.ValueOfFloat32(7)
	case protoreflect.DoubleKind:
		return protoreflect.ValueOfFloat64(7)
	case protoreflect.StringKind:
		return protoreflect.ValueOfString("x")
	case protoreflect.BytesKind:
		return protoreflect.ValueOfBytes([]byte("x"))
	}
	if depth > 0 {
		fill(fresh.Message(), depth-1)
	}
	return fresh
}

// TestListedCarriesEveryField fails when a field of Job, JobSpec or Step
// is missing from listedJob's copy: only the secret, scripts and
// environments may be left out of a listing.
func TestListedCarriesEveryField(t *testing.T) {
	j := &api.Job{}
	fill(j.ProtoReflect(), 3)
	want := proto.Clone(j).(*api.Job)
	want.Secret = ""
	for _, sp := range []*api.JobSpec{want.Spec, want.Steps[0].Spec} {
		sp.Script, sp.Env = "", nil
	}
	if got := listedJob(j); !proto.Equal(got, want) {
		t.Errorf("listedJob dropped or changed fields:\n got %v\nwant %v", got, want)
	}
	if j.Secret == "" || j.Spec.Script == "" || len(j.Spec.Env) == 0 {
		t.Error("listedJob changed the job it copied")
	}
}

// TestQueueSummary checks that a LIST_VIEW_QUEUE listing carries what
// squeue reads and nothing else, and a working directory only to those
// who may see it.
func TestQueueSummary(t *testing.T) {
	e := newAuthzEnv(t)
	j := &api.Job{}
	fill(j.ProtoReflect(), 3)
	j.Uid = alice
	sp := j.Spec
	want := &api.Job{
		Id: j.Id, User: j.User, Uid: j.Uid, State: j.State, Reason: j.Reason, Priority: j.Priority,
		SubmitUnixMs: j.SubmitUnixMs, StartUnixMs: j.StartUnixMs, EndUnixMs: j.EndUnixMs,
		ExpectedStartUnixMs: j.ExpectedStartUnixMs, ArrayJobId: j.ArrayJobId, ArrayTaskId: j.ArrayTaskId,
		Spec: &api.JobSpec{
			Name: sp.Name, Partition: sp.Partition, Account: sp.Account, Qos: sp.Qos,
			Reservation: sp.Reservation, Dependency: sp.Dependency, Comment: sp.Comment, Nice: sp.Nice,
			TimeLimitS: sp.TimeLimitS, NodesMin: sp.NodesMin, NodesMax: sp.NodesMax, Ntasks: sp.Ntasks,
			NtasksPerNode: sp.NtasksPerNode, GpusPerNode: sp.GpusPerNode, GpuType: sp.GpuType,
			GresPerNode: sp.GresPerNode, WorkingDir: sp.WorkingDir,
		},
		Allocation: &api.Allocation{Nodes: j.Allocation.Nodes, Ranks: []*api.Rank{{Cpus: j.Allocation.Ranks[0].Cpus}}},
	}
	owner := auth.Identity{UID: alice, Method: auth.MethodLocal}
	if got := e.s.queueSummary(owner, j); !proto.Equal(got, want) {
		t.Errorf("queueSummary(owner) =\n %v\nwant %v", got, want)
	}
	want.Spec.WorkingDir = ""
	other := auth.Identity{UID: bob, Method: auth.MethodLocal}
	if got := e.s.queueSummary(other, j); !proto.Equal(got, want) {
		t.Errorf("queueSummary(other user) =\n %v\nwant %v", got, want)
	}
}
