package acct

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"iter"
	"sync"
	"time"

	"github.com/loomhpc/loom/api"
	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

var (
	bucketJobs  = []byte("jobs")  // job id -> record
	bucketSpecs = []byte("specs") // array job id -> the spec its tasks share
	bucketUsage = []byte("usage") // job id -> what fair share needs of a job that ran
)

// A record is the archiving index (8 bytes), a flag byte and the job's
// encoding. flagSharedSpec: the job was stored without its spec, which is
// the one under its array job id in bucketSpecs.
const (
	flagOwnSpec    byte = 0
	flagSharedSpec byte = 1
	recordHeader        = 9
)

// Store is the accounting store of one server.
type Store struct {
	db *bolt.DB
	mu sync.Mutex
	// shared remembers, per array, the spec last stored for it, so the
	// tasks of one array sharing a spec pointer are compared once.
	shared map[uint64]*api.JobSpec
}

// Open opens (creating if needed) the store at path.
func Open(path string) (*Store, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second, NoFreelistSync: true, FreelistType: bolt.FreelistMapType})
	if err != nil {
		return nil, fmt.Errorf("acct: open %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketJobs, bucketSpecs, bucketUsage} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("acct: init %s: %w", path, err)
	}
	return &Store{db: db, shared: map[uint64]*api.JobSpec{}}, nil
}

// Close closes the file.
func (s *Store) Close() error { return s.db.Close() }

func key(id uint64) []byte { return binary.BigEndian.AppendUint64(nil, id) }

// Archive stores jobs, archived by the log entry at index, in one fsynced
// transaction. A job already stored by this entry or a later one is left
// as it is, so replaying the entry changes nothing. The job's secret is
// not kept.
func (s *Store) Archive(index uint64, jobs []*api.Job) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.db.Update(func(tx *bolt.Tx) error {
		jb, sb, ub := tx.Bucket(bucketJobs), tx.Bucket(bucketSpecs), tx.Bucket(bucketUsage)
		for _, j := range jobs {
			k := key(j.Id)
			if old := jb.Get(k); len(old) >= recordHeader && binary.BigEndian.Uint64(old) >= index {
				continue
			}
			flag, spec := flagOwnSpec, j.Spec
			if j.ArrayJobId != 0 && j.Spec != nil {
				shared, err := s.sharedSpec(sb, j)
				if err != nil {
					return err
				}
				if shared {
					flag, spec = flagSharedSpec, nil
				}
			}
			rec := withoutSpec(j)
			rec.Spec = spec
			b, err := proto.MarshalOptions{Deterministic: true}.Marshal(rec)
			if err != nil {
				return fmt.Errorf("acct: encode job %d: %w", j.Id, err)
			}
			v := make([]byte, recordHeader, recordHeader+len(b))
			binary.BigEndian.PutUint64(v, index)
			v[8] = flag
			if err := jb.Put(k, append(v, b...)); err != nil {
				return err
			}
			if j.StartUnixMs != 0 && j.EndUnixMs != 0 {
				if err := ub.Put(k, encodeUsage(j)); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

// sharedSpec reports whether j's spec is the one stored for its array,
// storing it as that when the array has none yet.
func (s *Store) sharedSpec(sb *bolt.Bucket, j *api.Job) (bool, error) {
	if s.shared[j.ArrayJobId] == j.Spec {
		return true, nil
	}
	k := key(j.ArrayJobId)
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(j.Spec)
	if err != nil {
		return false, fmt.Errorf("acct: encode spec of array %d: %w", j.ArrayJobId, err)
	}
	switch old := sb.Get(k); {
	case old == nil:
		if err := sb.Put(k, b); err != nil {
			return false, err
		}
	case string(old) != string(b):
		return false, nil // changed since (held, say): the task keeps its own
	}
	s.shared[j.ArrayJobId] = j.Spec
	return true, nil
}

// withoutSpec is a shallow copy of j (it shares j's fields: read only)
// without its spec and secret.
func withoutSpec(j *api.Job) *api.Job {
	c := &api.Job{}
	dst, src := c.ProtoReflect(), j.ProtoReflect()
	src.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		dst.Set(fd, v)
		return true
	})
	c.Spec, c.Secret = nil, ""
	return c
}

// ErrCorrupt is returned for a record the store cannot decode.
var ErrCorrupt = errors.New("acct: corrupt record")

// Job returns the archived job with id, or nil when none is stored.
func (s *Store) Job(id uint64) (*api.Job, error) {
	var j *api.Job
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketJobs).Get(key(id))
		if v == nil {
			return nil
		}
		var err error
		j, err = decode(tx, id, v)
		return err
	})
	return j, err
}

func decode(tx *bolt.Tx, id uint64, v []byte) (*api.Job, error) {
	if len(v) < recordHeader {
		return nil, fmt.Errorf("%w: job %d", ErrCorrupt, id)
	}
	j := &api.Job{}
	if err := proto.Unmarshal(v[recordHeader:], j); err != nil {
		return nil, fmt.Errorf("%w: job %d: %v", ErrCorrupt, id, err)
	}
	if v[8] == flagSharedSpec {
		b := tx.Bucket(bucketSpecs).Get(key(j.ArrayJobId))
		spec := &api.JobSpec{}
		if err := proto.Unmarshal(b, spec); b == nil || err != nil {
			return nil, fmt.Errorf("%w: job %d: the spec of array %d", ErrCorrupt, id, j.ArrayJobId)
		}
		j.Spec = spec
	}
	return j, nil
}

// Recent yields archived jobs newest (highest id) first, until the
// caller stops. Each yielded job has its spec; an error ends the walk.
func (s *Store) Recent() iter.Seq2[*api.Job, error] {
	return func(yield func(*api.Job, error) bool) {
		_ = s.db.View(func(tx *bolt.Tx) error {
			c := tx.Bucket(bucketJobs).Cursor()
			for k, v := c.Last(); k != nil; k, v = c.Prev() {
				j, err := decode(tx, binary.BigEndian.Uint64(k), v)
				if !yield(j, err) || err != nil {
					return nil
				}
			}
			return nil
		})
	}
}

// Len returns how many jobs the store holds.
func (s *Store) Len() (int, error) {
	n := 0
	err := s.db.View(func(tx *bolt.Tx) error {
		n = tx.Bucket(bucketJobs).Stats().KeyN
		return nil
	})
	return n, err
}

// Usage is what fair share needs of an archived job that ran: who it is
// charged to and the GPUs it held from start to end.
type Usage struct {
	JobID                    uint64
	User, Account            string // the job's owner and --account
	GPUs                     int
	SubmitMs, StartMs, EndMs int64
}

func encodeUsage(j *api.Job) []byte {
	gpus := 0
	for _, r := range j.GetAllocation().GetRanks() {
		gpus += len(r.GpuUuids)
	}
	b := make([]byte, 0, 32+len(j.User)+len(j.GetSpec().GetAccount()))
	b = binary.BigEndian.AppendUint64(b, uint64(j.SubmitUnixMs))
	b = binary.BigEndian.AppendUint64(b, uint64(j.StartUnixMs))
	b = binary.BigEndian.AppendUint64(b, uint64(j.EndUnixMs))
	b = binary.BigEndian.AppendUint32(b, uint32(gpus))
	b = binary.AppendUvarint(b, uint64(len(j.User)))
	b = append(b, j.User...)
	return append(b, j.GetSpec().GetAccount()...)
}

func decodeUsage(b []byte) (Usage, bool) {
	if len(b) < 28 {
		return Usage{}, false
	}
	u := Usage{
		SubmitMs: int64(binary.BigEndian.Uint64(b)),
		StartMs:  int64(binary.BigEndian.Uint64(b[8:])),
		EndMs:    int64(binary.BigEndian.Uint64(b[16:])),
		GPUs:     int(binary.BigEndian.Uint32(b[24:])),
	}
	n, w := binary.Uvarint(b[28:])
	if w <= 0 || uint64(len(b)-28-w) < n {
		return Usage{}, false
	}
	u.User = string(b[28+w : 28+w+int(n)])
	u.Account = string(b[28+w+int(n):])
	return u, true
}

// Usages yields the usage of archived jobs that ran, newest job first,
// down to the first one submitted before sinceMs: the fair-share ledger
// reads it instead of decoding whole jobs.
func (s *Store) Usages(sinceMs int64) iter.Seq[Usage] {
	return func(yield func(Usage) bool) {
		_ = s.db.View(func(tx *bolt.Tx) error {
			c := tx.Bucket(bucketUsage).Cursor()
			for k, v := c.Last(); k != nil; k, v = c.Prev() {
				u, ok := decodeUsage(v)
				if !ok {
					continue
				}
				u.JobID = binary.BigEndian.Uint64(k)
				if u.SubmitMs < sinceMs || !yield(u) {
					return nil
				}
			}
			return nil
		})
	}
}

// Records yields what a Raft snapshot carries of the store
// (state.SnapshotArchive): every job, in id order, with the index that
// archived it, and before the first task of an array stored without its
// spec, the spec the array's tasks share. Every record goes, whatever
// its index: a snapshot may so carry jobs archived after its own index,
// which the server installing it stores as applying that entry would
// (and applying it then changes nothing), and an operator's snapshot
// restore carries another cluster's indexes (operations.md).
//
// It reads in pages of up to recordsPage bytes, each in a read
// transaction of its own, and yields between them: a long read
// transaction would hold up the FSM's archive writes whenever bbolt
// needs to grow its file. Records are only ever added, so the pages
// still make a whole: every job archived before the walk began comes (a
// snapshot's view is taken before, so it gets every record up to its
// index), and a job archived meanwhile comes if its id is past the page
// read before. An error from yield ends the walk and is
// returned.
func (s *Store) Records(yield func(*api.AccountingRecord) error) error {
	sent := map[uint64]bool{} // arrays whose spec has been yielded
	var after []byte          // the last job key read
	for {
		var page []*api.AccountingRecord
		err := s.db.View(func(tx *bolt.Tx) error {
			var err error
			page, after, err = recordsPage(tx, after, sent)
			return err
		})
		if err != nil {
			return err
		}
		if len(page) == 0 {
			return nil
		}
		for _, rec := range page {
			if err := yield(rec); err != nil {
				return err
			}
		}
	}
}

// recordsPageBytes bounds the bytes of one page of Records.
const recordsPageBytes = 4 << 20

// recordsPage reads the records of the jobs after key after (all when
// nil), up to recordsPageBytes and at least one, copied out of tx, and
// returns them with the last key read. sent gains the arrays whose spec
// the page carries.
func recordsPage(tx *bolt.Tx, after []byte, sent map[uint64]bool) ([]*api.AccountingRecord, []byte, error) {
	sb, ub := tx.Bucket(bucketSpecs), tx.Bucket(bucketUsage)
	c := tx.Bucket(bucketJobs).Cursor()
	k, v := c.First()
	if after != nil {
		if k, v = c.Seek(after); k != nil && string(k) == string(after) {
			k, v = c.Next()
		}
	}
	var page []*api.AccountingRecord
	for size := 0; k != nil && size < recordsPageBytes; k, v = c.Next() {
		id := binary.BigEndian.Uint64(k)
		if len(v) < recordHeader {
			return nil, nil, fmt.Errorf("%w: job %d", ErrCorrupt, id)
		}
		rec := &api.AccountingRecord{JobId: id, Index: binary.BigEndian.Uint64(v), Job: bytes.Clone(v[recordHeader:]),
			SharedSpec: v[8] == flagSharedSpec, Usage: bytes.Clone(ub.Get(k))}
		if rec.SharedSpec {
			j := &api.Job{}
			if err := proto.Unmarshal(rec.Job, j); err != nil {
				return nil, nil, fmt.Errorf("%w: job %d: %v", ErrCorrupt, id, err)
			}
			if !sent[j.ArrayJobId] {
				spec := sb.Get(key(j.ArrayJobId))
				if spec == nil {
					return nil, nil, fmt.Errorf("%w: job %d: the spec of array %d", ErrCorrupt, id, j.ArrayJobId)
				}
				page = append(page, &api.AccountingRecord{ArrayJobId: j.ArrayJobId, Spec: bytes.Clone(spec)})
				sent[j.ArrayJobId] = true
				size += len(spec)
			}
		}
		page = append(page, rec)
		size += len(rec.Job) + len(rec.Usage)
		after = bytes.Clone(k)
	}
	return page, after, nil
}

// loadBatch bounds the bytes of records Load writes in one transaction.
const loadBatch = 4 << 20

// Load stores the records next returns, until it returns io.EOF, in
// fsynced transactions of up to loadBatch bytes: a Raft snapshot's
// records (Records on another server), read one at a time so that the
// history is never held whole in memory. As for Archive, a job already
// stored by the same entry or a later one is left as it is. A task whose
// array's spec here differs from the snapshot's keeps the snapshot's as
// its own. It returns how many jobs it stored.
func (s *Store) Load(next func() (*api.AccountingRecord, error)) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	theirs := map[uint64][]byte{} // arrays whose spec here differs from the snapshot's
	stored := 0
	for done := false; !done; {
		var batch []*api.AccountingRecord
		for size := 0; size < loadBatch; {
			rec, err := next()
			if errors.Is(err, io.EOF) {
				done = true
				break
			}
			if err != nil {
				return stored, err
			}
			if err := checkRecord(rec); err != nil {
				return stored, err
			}
			batch = append(batch, rec)
			size += len(rec.Job) + len(rec.Spec) + len(rec.Usage)
		}
		if !s.anyNew(batch) {
			continue
		}
		n := 0
		err := s.db.Update(func(tx *bolt.Tx) error {
			var err error
			n, err = loadTx(tx, batch, theirs)
			return err
		})
		if err != nil {
			return stored, fmt.Errorf("acct: load snapshot records: %w", err)
		}
		stored += n
	}
	return stored, nil
}

// anyNew reports whether batch holds a record this store lacks, so that
// a server restarting from its own snapshot, which holds only what the
// store already has, reads it without writing (and syncing) anything.
func (s *Store) anyNew(batch []*api.AccountingRecord) bool {
	found := false
	_ = s.db.View(func(tx *bolt.Tx) error {
		jb, sb := tx.Bucket(bucketJobs), tx.Bucket(bucketSpecs)
		for _, rec := range batch {
			if rec.JobId == 0 {
				// A spec that differs here goes through loadTx too, which
				// notes it for the array's tasks in later batches.
				old := sb.Get(key(rec.ArrayJobId))
				found = old == nil || string(old) != string(rec.Spec)
			} else {
				old := jb.Get(key(rec.JobId))
				found = len(old) < recordHeader || binary.BigEndian.Uint64(old) < rec.Index
			}
			if found {
				return nil
			}
		}
		return nil
	})
	return found
}

// checkRecord refuses a record that is neither a job nor an array's
// spec, or whose encoding does not decode.
func checkRecord(rec *api.AccountingRecord) error {
	switch {
	case rec.JobId == 0 && rec.ArrayJobId == 0:
		return fmt.Errorf("%w: a snapshot record with neither job_id nor array_job_id", ErrCorrupt)
	case rec.JobId == 0:
		if err := proto.Unmarshal(rec.Spec, &api.JobSpec{}); err != nil {
			return fmt.Errorf("%w: the spec of array %d in a snapshot: %v", ErrCorrupt, rec.ArrayJobId, err)
		}
	default:
		j := &api.Job{}
		if err := proto.Unmarshal(rec.Job, j); err != nil || j.Id != rec.JobId {
			return fmt.Errorf("%w: job %d in a snapshot does not decode as that job (%v)", ErrCorrupt, rec.JobId, err)
		}
		if rec.SharedSpec && j.ArrayJobId == 0 {
			return fmt.Errorf("%w: job %d in a snapshot has shared_spec but no array", ErrCorrupt, rec.JobId)
		}
	}
	return nil
}

// loadTx writes one batch of Load in tx and returns how many jobs it
// stored. theirs collects, across batches, the specs of arrays that this
// store already holds differently.
func loadTx(tx *bolt.Tx, batch []*api.AccountingRecord, theirs map[uint64][]byte) (int, error) {
	jb, sb, ub := tx.Bucket(bucketJobs), tx.Bucket(bucketSpecs), tx.Bucket(bucketUsage)
	n := 0
	for _, rec := range batch {
		if rec.JobId == 0 {
			k := key(rec.ArrayJobId)
			switch old := sb.Get(k); {
			case old == nil:
				if err := sb.Put(k, rec.Spec); err != nil {
					return n, err
				}
			case string(old) != string(rec.Spec):
				theirs[rec.ArrayJobId] = rec.Spec
			}
			continue
		}
		k := key(rec.JobId)
		if old := jb.Get(k); len(old) >= recordHeader && binary.BigEndian.Uint64(old) >= rec.Index {
			continue
		}
		flag, b := flagOwnSpec, rec.Job
		if rec.SharedSpec {
			flag = flagSharedSpec
			var err error
			if b, flag, err = ownSpec(sb, rec, theirs); err != nil {
				return n, err
			}
		}
		v := make([]byte, recordHeader, recordHeader+len(b))
		binary.BigEndian.PutUint64(v, rec.Index)
		v[8] = flag
		if err := jb.Put(k, append(v, b...)); err != nil {
			return n, err
		}
		if len(rec.Usage) > 0 {
			if err := ub.Put(k, rec.Usage); err != nil {
				return n, err
			}
		}
		n++
	}
	return n, nil
}

// ownSpec returns a shared-spec job record as it is stored: unchanged
// when this store's spec of the array is the snapshot's, else with the
// snapshot's spec inlined.
func ownSpec(sb *bolt.Bucket, rec *api.AccountingRecord, theirs map[uint64][]byte) ([]byte, byte, error) {
	j := &api.Job{}
	if err := proto.Unmarshal(rec.Job, j); err != nil {
		return nil, 0, fmt.Errorf("%w: job %d: %v", ErrCorrupt, rec.JobId, err)
	}
	spec, ok := theirs[j.ArrayJobId]
	switch {
	case !ok && sb.Get(key(j.ArrayJobId)) == nil:
		return nil, 0, fmt.Errorf("%w: job %d in a snapshot shares the spec of array %d, which it does not carry", ErrCorrupt, j.Id, j.ArrayJobId)
	case !ok:
		return rec.Job, flagSharedSpec, nil
	}
	j.Spec = &api.JobSpec{}
	if err := proto.Unmarshal(spec, j.Spec); err != nil {
		return nil, 0, fmt.Errorf("%w: the spec of array %d: %v", ErrCorrupt, j.ArrayJobId, err)
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(j)
	if err != nil {
		return nil, 0, fmt.Errorf("acct: encode job %d: %w", j.Id, err)
	}
	return b, flagOwnSpec, nil
}
