package state

import (
	"github.com/loomhpc/loom/api"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Specs are immutable once submitted: the tasks of an array share one
// (a 4 MiB script is held once, not once per task), and a changed job
// keeps its spec. The one command that changes a spec (hold/release)
// replaces it with a changed copy.

// cloneJob returns a deep copy of j that shares j's spec.
func cloneJob(j *api.Job) *api.Job {
	c := proto.Clone(withSpec(j, nil)).(*api.Job)
	c.Spec = j.Spec
	return c
}

// withSpec returns a shallow copy of j, sharing every field with it, but
// with spec as its spec. j is not changed.
func withSpec(j *api.Job, spec *api.JobSpec) *api.Job {
	c := &api.Job{}
	dst := c.ProtoReflect()
	src := j.ProtoReflect()
	src.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		dst.Set(fd, v)
		return true
	})
	if u := src.GetUnknown(); len(u) > 0 {
		dst.SetUnknown(u)
	}
	c.Spec = spec
	return c
}
