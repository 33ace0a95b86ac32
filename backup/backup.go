package backup

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"

	"github.com/loomhpc/loom/api"
	"github.com/loomhpc/loom/state"
	"google.golang.org/protobuf/proto"
)

// Magic opens every snapshot file; its last digit is the format's version.
const Magic = "LOOMSNAP1\n"

// maxHeader bounds the header's length, so that a file that is not a
// snapshot is refused before anything large is allocated.
const maxHeader = 64 << 10

// maxPrealloc bounds the memory reserved for the state up front, before
// its bytes have arrived: the header's size is not yet known to be true.
const maxPrealloc = 256 << 20

// ErrCorrupt is wrapped by every error about a file's contents (as
// opposed to an error reading it).
var ErrCorrupt = errors.New("backup: corrupt snapshot file")

// File is a snapshot file whose state matched its header's checksum.
type File struct {
	Meta  *api.SnapshotMeta
	State []byte // an api.StateSnapshot, as View.Marshal encodes it
}

// Encode frames state as a snapshot file described by meta, filling in
// meta's size and checksum.
func Encode(meta *api.SnapshotMeta, stateBytes []byte) ([]byte, error) {
	sum := sha256.Sum256(stateBytes)
	meta.Size = uint64(len(stateBytes))
	meta.Sha256 = hex.EncodeToString(sum[:])
	h, err := proto.MarshalOptions{Deterministic: true}.Marshal(meta)
	if err != nil {
		return nil, fmt.Errorf("backup: encode header: %w", err)
	}
	out := make([]byte, 0, len(Magic)+binary.MaxVarintLen64+len(h)+len(stateBytes))
	out = append(out, Magic...)
	out = binary.AppendUvarint(out, uint64(len(h)))
	out = append(out, h...)
	return append(out, stateBytes...), nil
}

// Read parses a snapshot file and checks its state against the header's
// size and checksum.
func Read(r io.Reader) (*File, error) {
	br := bufio.NewReader(r)
	magic := make([]byte, len(Magic))
	if _, err := io.ReadFull(br, magic); err != nil {
		return nil, fmt.Errorf("%w: too short for a header (%v)", ErrCorrupt, err)
	}
	if string(magic) != Magic {
		return nil, fmt.Errorf("%w: it does not start with %q: not a file of loom operator snapshot save", ErrCorrupt, Magic[:len(Magic)-1])
	}
	n, err := binary.ReadUvarint(br)
	if err != nil || n > maxHeader {
		return nil, fmt.Errorf("%w: header length unreadable or over %d bytes", ErrCorrupt, maxHeader)
	}
	h := make([]byte, n)
	if _, err := io.ReadFull(br, h); err != nil {
		return nil, fmt.Errorf("%w: header: %v", ErrCorrupt, err)
	}
	meta := &api.SnapshotMeta{}
	if err := proto.Unmarshal(h, meta); err != nil {
		return nil, fmt.Errorf("%w: header: %v", ErrCorrupt, err)
	}
	// Read at most one byte past the size the header gives, so that a
	// file with more state than it says is noticed.
	var buf bytes.Buffer
	buf.Grow(int(min(meta.Size, maxPrealloc)) + 1)
	got, err := io.Copy(&buf, io.LimitReader(br, int64(meta.Size)+1))
	if err != nil {
		return nil, fmt.Errorf("backup: read state: %w", err)
	}
	if uint64(got) != meta.Size {
		more := ""
		if uint64(got) > meta.Size {
			more = " or more"
		}
		return nil, fmt.Errorf("%w: size: the header says %d bytes of state, the file holds %d%s: it was truncated or changed", ErrCorrupt, meta.Size, got, more)
	}
	sum := sha256.Sum256(buf.Bytes())
	if hex.EncodeToString(sum[:]) != meta.Sha256 {
		return nil, fmt.Errorf("%w: checksum: the header says sha256 %s, the %d bytes of state hash to %s: the file was changed after it was saved",
			ErrCorrupt, meta.Sha256, meta.Size, hex.EncodeToString(sum[:]))
	}
	return &File{Meta: meta, State: buf.Bytes()}, nil
}

// Inspect decodes the file's state as a server would restore it and
// describes it. It fails when the state does not decode.
func (f *File) Inspect() (*api.SnapshotInfo, error) {
	store := state.NewStore()
	if err := state.NewFSM(store, slog.New(slog.DiscardHandler)).Restore(bytes.NewReader(f.State)); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	v := store.View()
	hash, err := v.Hash()
	if err != nil {
		return nil, fmt.Errorf("backup: state hash: %w", err)
	}
	info := &api.SnapshotInfo{Meta: f.Meta, Jobs: uint32(v.NumJobs()), StateHash: hash}
	for range v.Nodes() {
		info.Nodes++
	}
	for range v.Servers() {
		info.Servers++
	}
	if v.Index() != f.Meta.Index {
		return nil, fmt.Errorf("%w: index: the header says %d, the state holds %d", ErrCorrupt, f.Meta.Index, v.Index())
	}
	return info, nil
}
