package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/loomhpc/loom/api"
	"github.com/loomhpc/loom/api/apirpc"
)

// Acked is one acknowledged submit: the client's idempotency token and
// the job id the server answered with.
type Acked struct {
	Token string
	ID    uint64
}

// Submitter is a client that submits small one-GPU jobs through a set of
// servers, going round them with the same idempotency token until one
// answers, as the CLI does, and keeps the acknowledged submits.
type Submitter struct {
	mu   sync.Mutex
	jobs []apirpc.JobServiceClient
	got  []Acked
	n    atomic.Int64
}

// NewSubmitter returns a submitter that goes round jobs.
func NewSubmitter(jobs ...apirpc.JobServiceClient) *Submitter {
	return &Submitter{jobs: jobs}
}

// SetServers replaces the servers the submitter goes round, after a
// membership change.
func (s *Submitter) SetServers(jobs ...apirpc.JobServiceClient) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.jobs = jobs
}

func (s *Submitter) server(i int) apirpc.JobServiceClient {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.jobs[i%len(s.jobs)]
}

// Run submits jobs one after another until ctx ends, starting with
// server first.
func (s *Submitter) Run(ctx context.Context, first int) {
	for i := first; ctx.Err() == nil; i++ {
		b := make([]byte, 12)
		rand.Read(b)
		tok := hex.EncodeToString(b)
		req := &api.SubmitRequest{
			Spec:             &api.JobSpec{Name: "load", GpusPerNode: 1, Script: "#!/bin/sh\ntrue\n", WorkingDir: os.TempDir()},
			IdempotencyToken: tok,
		}
		for k := 0; ctx.Err() == nil && k < 50; k++ {
			cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			r, err := s.server(i+k).Submit(cctx, req)
			cancel()
			if err == nil {
				s.mu.Lock()
				s.got = append(s.got, Acked{tok, r.JobId})
				s.mu.Unlock()
				s.n.Add(1)
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// Count is how many submits were acknowledged so far.
func (s *Submitter) Count() int64 { return s.n.Load() }

// Acked returns the acknowledged submits so far.
func (s *Submitter) Acked() []Acked {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Acked(nil), s.got...)
}

// Missing returns the acknowledged submits that are not among jobs (with
// the id and token the client was given).
func (s *Submitter) Missing(jobs []*api.Job) []Acked {
	byID := map[uint64]*api.Job{}
	for _, j := range jobs {
		byID[j.Id] = j
	}
	var out []Acked
	for _, a := range s.Acked() {
		if j := byID[a.ID]; j == nil || j.IdempotencyToken != a.Token {
			out = append(out, a)
		}
	}
	return out
}
