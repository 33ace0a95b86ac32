package agent

import (
	"errors"
	"io"
	"os"
	"time"

	"github.com/loomhpc/loom/api"
	"github.com/loomhpc/loom/api/apirpc"
	"github.com/loomhpc/loom/auth"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// logServer serves rank output to the servers (loom logs).
type logServer struct {
	apirpc.UnimplementedAgentLogsServer
	a *Agent
}

// logPoll is how often a followed file is checked for new output. Tailing
// a file has no event to wait on without inotify; a short poll is simpler
// and cheap.
const logPoll = 100 * time.Millisecond

func (ls *logServer) TaskLogs(req *api.TaskLogsRequest, stream apirpc.AgentLogs_TaskLogsServer) error {
	a := ls.a
	type source struct {
		rank uint32
		path string
		done chan struct{}
		f    *os.File
		off  int64
	}
	var srcs []*source
	seen := map[string]bool{}
	var uid uint32
	a.mu.Lock()
	for _, rank := range req.Ranks {
		var step uint32
		if req.Step != nil {
			step = stepKey(*req.Step)
		}
		o, ok := a.outs[outKey{req.JobId, rank, step}]
		if !ok || o.gen != req.Generation {
			continue
		}
		uid = o.uid
		path := o.stdout
		if req.Stderr {
			path = o.stderr
		}
		if seen[path] {
			continue // ranks sharing one output file: stream it once
		}
		seen[path] = true
		srcs = append(srcs, &source{rank: rank, path: path, done: o.done})
	}
	a.mu.Unlock()
	if len(srcs) == 0 {
		return status.Errorf(codes.NotFound, "node %s has no output for job %d ranks %v (not started here yet, or the agent restarted)", a.cfg.Name, req.JobId, req.Ranks)
	}
	// The files are read as the job's user, never as root: the job named
	// them, and may have named a file only root can read, or put a
	// symlink in place of its output.
	user, err := auth.LookupUser(uid)
	if err != nil {
		return status.Errorf(codes.FailedPrecondition, "node %s: job %d: %v", a.cfg.Name, req.JobId, err)
	}
	defer func() {
		for _, s := range srcs {
			if s.f != nil {
				s.f.Close()
			}
		}
	}()
	buf := make([]byte, 32<<10)
	for {
		progress, open := false, 0
		for _, s := range srcs {
			finished := isClosed(s.done)
			if s.f == nil {
				f, err := openOutputAs(user, s.path)
				if err != nil {
					if !errors.Is(err, os.ErrNotExist) || finished || !req.Follow {
						continue
					}
					open++
					continue
				}
				s.f = f
			}
			n, err := s.f.ReadAt(buf, s.off)
			if n > 0 {
				s.off += int64(n)
				progress = true
				if serr := stream.Send(&api.LogChunk{Rank: s.rank, Data: append([]byte(nil), buf[:n]...)}); serr != nil {
					return serr
				}
			}
			if err != nil && err != io.EOF {
				return status.Errorf(codes.Internal, "read %s: %v", s.path, err)
			}
			if n > 0 || (req.Follow && !finished) {
				open++
			}
		}
		if open == 0 {
			return nil
		}
		if !progress {
			select {
			case <-time.After(logPoll):
			case <-stream.Context().Done():
				return stream.Context().Err()
			case <-a.ctx.Done():
				return status.Error(codes.Unavailable, "agent shutting down")
			}
		}
	}
}

func isClosed(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}
