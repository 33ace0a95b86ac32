package server

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/loomhpc/loom/api"
	"github.com/loomhpc/loom/state/acct"
)

// The sacct read path: jobs that have left the live state (MinJobAge) are
// read from this server's accounting store, which the FSM writes at apply
// time on every server.

// acctFile is the accounting store's file in the data dir.
const acctFile = "acct.db"

func openAcct(dataDir string) (*acct.Store, error) {
	if dataDir == "" {
		return nil, nil
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	st, err := acct.Open(filepath.Join(dataDir, acctFile))
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	return st, nil
}

func (s *Server) closeAcct() {
	if s.acct != nil {
		s.acct.Close()
	}
}

// archivedJob returns the job with id from the accounting store, or nil.
func (s *Server) archivedJob(id uint64) *api.Job {
	if s.acct == nil {
		return nil
	}
	j, err := s.acct.Job(id)
	if err != nil {
		s.log.Warn("accounting store", "job_id", id, "err", err)
		return nil
	}
	return j
}

// maxArchivedListed bounds the archived jobs one listing without job ids
// adds (newest first); name the jobs (sacct -j) to reach older ones.
const maxArchivedListed = 10000

// archivedJobs yields up to maxArchivedListed archived jobs that keep
// accepts, newest first.
func (s *Server) archivedJobs(keep func(*api.Job) bool) []*api.Job {
	if s.acct == nil {
		return nil
	}
	var out []*api.Job
	for j, err := range s.acct.Recent() {
		if err != nil {
			s.log.Warn("accounting store", "err", err)
			break
		}
		if keep(j) {
			out = append(out, j)
			if len(out) == maxArchivedListed {
				break
			}
		}
	}
	return out
}
