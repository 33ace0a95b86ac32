package server

import (
	"context"
	"sync"
	"weak"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/loomhpc/loom/api"
	"github.com/loomhpc/loom/auth"
	"github.com/loomhpc/loom/state"
)

// The listing fast path. A job in the state is never changed in place (a
// change stores a new *api.Job), so the encoded summary of one is good for
// as long as it lives. ListJobs keeps the summaries it has encoded, keyed
// by the job's identity and whether the caller may see its private fields,
// and writes a page as those bytes placed one after another into the
// response's jobs field: a squeue over 10,000 queued jobs then copies
// about 1 MB instead of building and encoding 10,000 messages, and the
// server's collector has nothing to do for it.
//
// The bytes ride in the response's unknown fields under the number of its
// jobs field, which is the same wire encoding as the field itself: a client
// decodes them as jobs and cannot tell the difference.

// summaryCacheMax is how many encoded summaries one generation of the
// cache holds (about 100 bytes each) before it is set aside.
const summaryCacheMax = 1 << 18

// summaryKey names one job's summary as one kind of caller sees it. The
// weak pointer does not keep an old version of a job alive, and is never
// equal to one made for another job, even one later allocated where it
// was.
type summaryKey struct {
	job    weak.Pointer[api.Job]
	hidden bool
	view   api.ListView
	noSpec bool // in the queue view, without the spec it shares (api.SpecShared)
}

// summaryCache holds encoded summaries in two generations: lookups move
// what they find in the old one to the new one, and the old one is dropped
// when the new one is full, so summaries of jobs that have changed or left
// go within two generations.
type summaryCache struct {
	mu        sync.Mutex
	cur, prev map[summaryKey][]byte
}

// jobsField is the field number of ListJobsResponse.jobs.
var jobsField = (&api.ListJobsResponse{}).ProtoReflect().Descriptor().Fields().ByName("jobs").Number()

// appendSummaries sets resp's jobs to the summaries of jobs in view as id
// may see them (listedAs), from the cache where it has them. In the queue
// view a job whose spec is that of the array task before it goes without
// (api.SpecShared). Only jobs of the live
// state snap are cached: one read back from the accounting store is a new
// value on every call and would only push others out.
func (s *Server) appendSummaries(id auth.Identity, view api.ListView, snap *state.View, resp *api.ListJobsResponse, jobs []*api.Job) error {
	c := &s.summaries
	c.mu.Lock()
	defer c.mu.Unlock()
	var raw []byte
	for i, j := range jobs {
		k := summaryKey{job: weak.Make(j), hidden: !s.canSee(id, j, false), view: view}
		k.noSpec = view == api.ListView_LIST_VIEW_QUEUE && i > 0 && api.SpecShared(jobs[i-1], j)
		b, ok := c.cur[k]
		if !ok {
			if b, ok = c.prev[k]; !ok {
				l := s.listedAs(id, view, j)
				if k.noSpec {
					l.Spec = nil
				}
				var err error
				if b, err = proto.Marshal(l); err != nil {
					return err
				}
			}
			if snap.Job(j.Id) == j {
				if len(c.cur) >= summaryCacheMax || c.cur == nil {
					c.prev, c.cur = c.cur, make(map[summaryKey][]byte)
				}
				c.cur[k] = b
			}
		}
		raw = protowire.AppendTag(raw, jobsField, protowire.BytesType)
		raw = protowire.AppendBytes(raw, b)
	}
	resp.Jobs = nil
	resp.ProtoReflect().SetUnknown(raw)
	return nil
}

// listedAs returns j as a listing in view carries it to id.
func (s *Server) listedAs(id auth.Identity, view api.ListView, j *api.Job) *api.Job {
	if view == api.ListView_LIST_VIEW_QUEUE {
		return s.queueSummary(id, j)
	}
	return s.summary(id, j)
}

// viaGRPC reports whether ctx is that of a call that came through the
// gRPC server, whose response is encoded before anything reads it, rather
// than a direct call of the handler.
func viaGRPC(ctx context.Context) bool {
	return grpc.ServerTransportStreamFromContext(ctx) != nil
}
