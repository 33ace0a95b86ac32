package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"text/tabwriter"

	"github.com/loomhpc/loom/api"
	"github.com/loomhpc/loom/api/apiclient"
	"github.com/loomhpc/loom/backup"
	"github.com/loomhpc/loom/rpcclient"
)

// runSnapshot is `loom operator snapshot save|inspect|restore FILE`.
func runSnapshot(ctx context.Context, e *env, args []string, asJSON bool) int {
	if len(args) != 2 {
		return e.fail(&usageError{msg: "expected: snapshot save FILE | snapshot inspect FILE | snapshot restore FILE"})
	}
	verb, path := args[0], args[1]
	switch verb {
	case "save":
		return snapshotSave(ctx, e, path, asJSON)
	case "inspect":
		f, info, err := readSnapshot(path)
		if err != nil {
			return e.fail(err)
		}
		return printSnapshot(e, path, f, info, asJSON)
	case "restore":
		return snapshotRestore(ctx, e, path, asJSON)
	}
	return e.fail(&usageError{msg: fmt.Sprintf("unknown operator command snapshot %s (want save, inspect or restore)", verb)})
}

// snapshotSave fetches a snapshot from the leader, checks it, and writes
// it to path atomically with mode 0600 (the state holds jobs' scripts,
// environments and secrets).
func snapshotSave(ctx context.Context, e *env, path string, asJSON bool) int {
	c, err := newClient(e)
	if err != nil {
		return e.fail(err)
	}
	defer c.Close()
	var file bytes.Buffer
	err = c.do(ctx, true, func(ctx context.Context, cc *rpcclient.Conn) error {
		file.Reset()
		stream, err := apiclient.NewOperatorClient(cc).SnapshotSave(ctx, &api.SnapshotSaveRequest{})
		if err != nil {
			return err
		}
		for {
			chunk, err := stream.Recv()
			if errors.Is(err, io.EOF) {
				return nil
			}
			if err != nil {
				return err
			}
			file.Write(chunk.Data)
		}
	})
	if err != nil {
		return e.fail(err)
	}
	f, err := backup.Read(bytes.NewReader(file.Bytes()))
	if err != nil {
		return e.fail(fmt.Errorf("the snapshot the server sent: %w", err))
	}
	info, err := f.Inspect()
	if err != nil {
		return e.fail(fmt.Errorf("the snapshot the server sent: %w", err))
	}
	if err := writeFileAtomic(path, file.Bytes()); err != nil {
		return e.fail(err)
	}
	if asJSON {
		if err := writeJSON(e.stdout, info); err != nil {
			return e.fail(err)
		}
		return 0
	}
	m := info.Meta
	fmt.Fprintf(e.stdout, "Saved snapshot to %s: index %d, term %d, from %s, %d jobs, %d nodes, %d bytes, sha256 %s\n",
		path, m.Index, m.Term, m.LeaderId, info.Jobs, info.Nodes, file.Len(), m.Sha256)
	return 0
}

// snapshotRestore checks the file here, then sends it to the cluster,
// whose leader checks it again and installs it through Raft.
func snapshotRestore(ctx context.Context, e *env, path string, asJSON bool) int {
	f, _, err := readSnapshot(path)
	if err != nil {
		return e.fail(fmt.Errorf("%w; the cluster is unchanged", err))
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return e.fail(err)
	}
	c, err := newClient(e)
	if err != nil {
		return e.fail(err)
	}
	defer c.Close()
	var resp *api.SnapshotRestoreResponse
	err = c.do(ctx, true, func(ctx context.Context, cc *rpcclient.Conn) error {
		stream, err := apiclient.NewOperatorClient(cc).SnapshotRestore(ctx)
		if err != nil {
			return err
		}
		for b := raw; len(b) > 0; {
			n := min(len(b), 1<<20)
			// Send reports the server's refusal only through
			// CloseAndRecv; io.EOF here means it has answered.
			if err := stream.Send(&api.SnapshotChunk{Data: b[:n]}); err != nil {
				if errors.Is(err, io.EOF) {
					break
				}
				return err
			}
			b = b[n:]
		}
		resp, err = stream.CloseAndRecv()
		return err
	})
	if err != nil {
		return e.fail(err)
	}
	if asJSON {
		if err := writeJSON(e.stdout, resp); err != nil {
			return e.fail(err)
		}
		return 0
	}
	r := resp.Restored
	fmt.Fprintf(e.stdout, "Restored %s (index %d, term %d, saved by %s): %d jobs, %d nodes, state hash %s; the cluster's Raft index is now %d\n",
		path, f.Meta.Index, f.Meta.Term, f.Meta.LeaderId, r.Jobs, r.Nodes, r.StateHash, resp.RaftIndex)
	return 0
}

// readSnapshot reads and checks a snapshot file.
func readSnapshot(path string) (*backup.File, *api.SnapshotInfo, error) {
	fd, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer fd.Close()
	f, err := backup.Read(fd)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	info, err := f.Inspect()
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	return f, info, nil
}

func printSnapshot(e *env, path string, f *backup.File, info *api.SnapshotInfo, asJSON bool) int {
	if asJSON {
		if err := writeJSON(e.stdout, info); err != nil {
			return e.fail(err)
		}
		return 0
	}
	m := f.Meta
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "File\t%s\n", path)
	fmt.Fprintf(tw, "Index\t%d\n", m.Index)
	fmt.Fprintf(tw, "Term\t%d\n", m.Term)
	fmt.Fprintf(tw, "Saved by\t%s\n", m.LeaderId)
	fmt.Fprintf(tw, "Created\t%s\n", slurmTimestamp(m.CreatedUnixMs, e.loc))
	fmt.Fprintf(tw, "Size\t%d bytes of state\n", m.Size)
	fmt.Fprintf(tw, "Checksum\tsha256 %s (verified)\n", m.Sha256)
	fmt.Fprintf(tw, "Jobs\t%d\n", info.Jobs)
	fmt.Fprintf(tw, "Nodes\t%d\n", info.Nodes)
	fmt.Fprintf(tw, "Servers\t%d\n", info.Servers)
	fmt.Fprintf(tw, "State hash\t%s\n", info.StateHash)
	tw.Flush()
	return 0
}

// writeFileAtomic writes b to path through a temporary file in the same
// directory and a rename, so that path holds either its old contents or
// all of b, never a part; the file has mode 0600.
func writeFileAtomic(path string, b []byte) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // after a successful rename there is nothing left to remove
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
