package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/loomhpc/loom/api"
	"github.com/loomhpc/loom/api/apirpc"
	"github.com/loomhpc/loom/auth"
	"github.com/loomhpc/loom/backup"
	"github.com/loomhpc/loom/state"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// snapshotChunk is how many bytes of a snapshot file one message carries,
// well under gRPC's 4 MiB message limit.
const snapshotChunk = 1 << 20

// SnapshotSave streams a snapshot file of the leader's state. The leader
// first confirms with a quorum that it still leads and has applied every
// committed entry, so the file holds every write acknowledged before the
// call. A follower relays the leader's stream.
func (os *operatorService) SnapshotSave(req *api.SnapshotSaveRequest, stream grpc.ServerStreamingServer[api.SnapshotChunk]) error {
	s := os.s
	ctx := stream.Context()
	conn, fctx, err := s.leaderConn(ctx)
	if err != nil {
		return err
	}
	if conn != nil {
		from, err := apirpc.NewOperatorClient(conn).SnapshotSave(fctx, req)
		if err != nil {
			return s.leaderUnavailable(err)
		}
		for {
			c, err := from.Recv()
			if errors.Is(err, io.EOF) {
				return nil
			}
			if err != nil {
				return s.leaderUnavailable(err)
			}
			if err := stream.Send(c); err != nil {
				return err
			}
		}
	}
	if err := s.raft.VerifyLeader(ctx); err != nil {
		return toStatus(err)
	}
	term := s.raft.Term()
	v := s.State()
	// The file carries the accounting store's records too, so that a
	// restore brings back sacct's answers for jobs that left the live
	// state.
	var archive state.Archive
	if s.acct != nil {
		archive = s.acct
	}
	var b bytes.Buffer
	if err := state.WriteSnapshot(&b, v, archive); err != nil {
		return toStatus(fmt.Errorf("encode state: %w", err))
	}
	file, err := backup.Encode(&api.SnapshotMeta{Index: v.Index(), Term: term, LeaderId: s.cfg.Name, CreatedUnixMs: nowMs()}, b.Bytes())
	if err != nil {
		return toStatus(err)
	}
	s.log.Info("snapshot saved for an operator", "index", v.Index(), "term", term, "bytes", len(file), "jobs", v.NumJobs(), "user", callerName(ctx))
	return sendChunks(file, func(c *api.SnapshotChunk) error { return stream.Send(c) })
}

// SnapshotRestore replaces the cluster's state with a snapshot file's.
// The whole file is received and checked (size, checksum, that the state
// decodes) before anything changes, so a damaged file is refused with the
// cluster untouched. A follower checks it too, then relays it to the
// leader, which restores it through Raft so that every server installs
// it. See docs/operations.md, "Backup and restore", for what a restore
// does to running jobs.
func (os *operatorService) SnapshotRestore(stream grpc.ClientStreamingServer[api.SnapshotChunk, api.SnapshotRestoreResponse]) error {
	s := os.s
	ctx := stream.Context()
	var buf bytes.Buffer
	for {
		c, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		buf.Write(c.Data)
	}
	f, err := backup.Read(bytes.NewReader(buf.Bytes()))
	if err != nil {
		return toStatus(err)
	}
	if _, err := f.Inspect(); err != nil {
		return toStatus(err)
	}
	conn, fctx, err := s.leaderConn(ctx)
	if err != nil {
		return err
	}
	if conn != nil {
		to, err := apirpc.NewOperatorClient(conn).SnapshotRestore(fctx)
		if err != nil {
			return s.leaderUnavailable(err)
		}
		if err := sendChunks(buf.Bytes(), to.Send); err != nil && !errors.Is(err, io.EOF) {
			return s.leaderUnavailable(err)
		}
		resp, err := to.CloseAndRecv()
		if err != nil {
			return s.leaderUnavailable(err)
		}
		return stream.SendAndClose(resp)
	}
	stateBytes, err := keepJobIDsUnique(f.State, s.State().NextJobID())
	if err != nil {
		return toStatus(err)
	}
	// Describe what is installed, which differs from the file only in a
	// next job id kept ahead of the ids this cluster has given out.
	info, err := (&backup.File{Meta: f.Meta, State: stateBytes}).Inspect()
	if err != nil {
		return toStatus(err)
	}
	at, err := s.raft.Restore(ctx, stateBytes)
	if err != nil {
		return toStatus(err)
	}
	// Record this server's addresses at once: followers find the leader by
	// its record, which the file may hold with another cluster's
	// addresses. The entry also brings the state's index, which is the
	// file's after a restore, up to the log's, so that reads waiting for
	// an index written before the restore go on.
	if res, err := s.apply(ctx, state.CmdServerMember, &api.ServerMembershipCommand{Server: s.self()}); err != nil {
		s.log.Warn("could not record this server's addresses after a snapshot restore; it will retry", "err", err)
	} else {
		at = res.Index
	}
	s.log.Warn("cluster state replaced by a snapshot restore", "snapshot_index", f.Meta.Index, "snapshot_term", f.Meta.Term,
		"snapshot_leader", f.Meta.LeaderId, "jobs", info.Jobs, "nodes", info.Nodes, "raft_index", at, "user", callerName(ctx))
	return stream.SendAndClose(&api.SnapshotRestoreResponse{Restored: info, RaftIndex: at})
}

// keepJobIDsUnique returns the encoded state with its next job id raised
// to next when that is higher: ids this cluster gave out after the
// snapshot was saved are never given again, so no two jobs in accounting
// or on an agent share an id. A fresh cluster (next 1) leaves the state
// exactly as saved.
func keepJobIDsUnique(stateBytes []byte, next uint64) ([]byte, error) {
	var ss api.StateSnapshot
	if err := proto.Unmarshal(stateBytes, &ss); err != nil {
		return nil, fmt.Errorf("%w: %v", backup.ErrCorrupt, err)
	}
	if ss.NextJobId >= next {
		return stateBytes, nil
	}
	ss.NextJobId = next
	return proto.MarshalOptions{Deterministic: true}.Marshal(&ss)
}

// sendChunks sends b in messages of at most snapshotChunk bytes.
func sendChunks(b []byte, send func(*api.SnapshotChunk) error) error {
	for len(b) > 0 {
		n := min(len(b), snapshotChunk)
		if err := send(&api.SnapshotChunk{Data: b[:n]}); err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}

// leaderUnavailable words a relay's failure as forward does: when the
// leader did not answer, as this server's own Unavailable answer.
func (s *Server) leaderUnavailable(err error) error {
	if status.Code(err) != codes.Unavailable {
		return err
	}
	_, id := s.raft.Leader()
	return status.Errorf(codes.Unavailable, "%s could not reach leader %s: %s", s.cfg.Name, id, status.Convert(err).Message())
}

// callerName names the operator of a call for the log.
func callerName(ctx context.Context) string {
	if id, ok := auth.FromContext(ctx); ok {
		return id.String()
	}
	return "a server"
}
