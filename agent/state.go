package agent

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"sync"
	"time"

	"github.com/loomhpc/loom/api"
	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
	"google.golang.org/protobuf/proto"
)

// taskRecord is what the agent keeps of a rank it started, so that a
// restarted agent can re-attach to it: the job and rank as assigned, and
// where the rank writes.
type taskRecord struct {
	Job           *api.Job  `json:"-"`
	Rank          *api.Rank `json:"-"`
	JobBytes      []byte    `json:"job"`
	RankBytes     []byte    `json:"rank"`
	StartedUnixMs int64     `json:"started_unix_ms"` // when the agent set out to start it (older agents: 0 until the driver had)
	Stdout        string    `json:"stdout"`
	Stderr        string    `json:"stderr"`
	Cores         []int     `json:"cores,omitempty"` // the node's cores bound to the rank
}

// stateStore keeps the agent's task records, and where each rank's GPU
// usage count stood at the last sample, across restarts.
type stateStore interface {
	putTask(k taskKey, r *taskRecord) error
	deleteTask(k taskKey) error
	allTasks() (map[taskKey]*taskRecord, error)
	// putUsage replaces the stored usage marks with marks.
	putUsage(marks map[taskKey]usageMark) error
	allUsage() (map[taskKey]usageMark, error)
	Close() error
}

var (
	tasksBucket = []byte("tasks")
	usageBucket = []byte("usage")
)

// boltStore is the stateStore in a bbolt file under the agent's data dir.
// Its writes go through bbolt's Batch: the ranks that start or end
// together on a node (an array's tasks, a gang's ranks) share one
// transaction and one fsync instead of queueing for one each.
type boltStore struct{ db *bolt.DB }

// stateBatchDelay is how long a write waits for others to share its
// commit: a lone rank's start is that much later, well under the fork
// and exec that follow it.
const stateBatchDelay = time.Millisecond

// errStateLocked says another agent holds the data dir.
var errStateLocked = errors.New("agent: the state file is locked: is another agent running on this data dir?")

func openBoltStore(path string) (*boltStore, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("%w (%s)", errStateLocked, path)
	}
	if err != nil {
		return nil, fmt.Errorf("agent: state %s: %w", path, err)
	}
	db.MaxBatchDelay = stateBatchDelay
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{tasksBucket, usageBucket} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("agent: state %s: %w", path, err)
	}
	return &boltStore{db: db}, nil
}

// taskKeyBytes encodes k: job, generation, rank, and for a step task the
// step (a gang rank's key keeps the 20 bytes it always had).
func taskKeyBytes(k taskKey) []byte {
	n := 20
	if k.step != 0 {
		n = 24
	}
	b := make([]byte, n)
	binary.BigEndian.PutUint64(b, k.job)
	binary.BigEndian.PutUint64(b[8:], k.gen)
	binary.BigEndian.PutUint32(b[16:], k.rank)
	if k.step != 0 {
		binary.BigEndian.PutUint32(b[20:], k.step)
	}
	return b
}

func (s *boltStore) putTask(k taskKey, r *taskRecord) error {
	v, err := encodeRecord(r)
	if err != nil {
		return err
	}
	return s.db.Batch(func(tx *bolt.Tx) error { return tx.Bucket(tasksBucket).Put(taskKeyBytes(k), v) })
}

func (s *boltStore) deleteTask(k taskKey) error {
	return s.db.Batch(func(tx *bolt.Tx) error { return tx.Bucket(tasksBucket).Delete(taskKeyBytes(k)) })
}

func (s *boltStore) allTasks() (map[taskKey]*taskRecord, error) {
	out := map[taskKey]*taskRecord{}
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(tasksBucket).ForEach(func(k, v []byte) error {
			tk, err := parseTaskKey(k)
			if err != nil {
				return err
			}
			r, err := decodeRecord(v)
			if err != nil {
				return err
			}
			out[tk] = r
			return nil
		})
	})
	return out, err
}

// parseTaskKey decodes what taskKeyBytes encoded.
func parseTaskKey(k []byte) (taskKey, error) {
	if len(k) != 20 && len(k) != 24 {
		return taskKey{}, fmt.Errorf("agent: state: bad task key %x", k)
	}
	tk := taskKey{binary.BigEndian.Uint64(k), binary.BigEndian.Uint64(k[8:]), binary.BigEndian.Uint32(k[16:]), 0}
	if len(k) == 24 {
		tk.step = binary.BigEndian.Uint32(k[20:])
	}
	return tk, nil
}

func (s *boltStore) putUsage(marks map[taskKey]usageMark) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		if err := tx.DeleteBucket(usageBucket); err != nil {
			return err
		}
		b, err := tx.CreateBucket(usageBucket)
		if err != nil {
			return err
		}
		for k, m := range marks {
			v, err := json.Marshal(m)
			if err != nil {
				return err
			}
			if err := b.Put(taskKeyBytes(k), v); err != nil {
				return err
			}
		}
		return nil
	})
}

func (s *boltStore) allUsage() (map[taskKey]usageMark, error) {
	out := map[taskKey]usageMark{}
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(usageBucket).ForEach(func(k, v []byte) error {
			tk, err := parseTaskKey(k)
			if err != nil {
				return err
			}
			var m usageMark
			if err := json.Unmarshal(v, &m); err != nil {
				return fmt.Errorf("agent: state: usage mark %v: %w", tk, err)
			}
			out[tk] = m
			return nil
		})
	})
	return out, err
}

func (s *boltStore) Close() error { return s.db.Close() }

func encodeRecord(r *taskRecord) ([]byte, error) {
	c := *r
	var err error
	if c.JobBytes, err = proto.Marshal(r.Job); err != nil {
		return nil, err
	}
	if c.RankBytes, err = proto.Marshal(r.Rank); err != nil {
		return nil, err
	}
	return json.Marshal(&c)
}

func decodeRecord(v []byte) (*taskRecord, error) {
	r := &taskRecord{Job: &api.Job{}, Rank: &api.Rank{}}
	if err := json.Unmarshal(v, r); err != nil {
		return nil, fmt.Errorf("agent: state: task record: %w", err)
	}
	if err := proto.Unmarshal(r.JobBytes, r.Job); err != nil {
		return nil, fmt.Errorf("agent: state: task record job: %w", err)
	}
	if err := proto.Unmarshal(r.RankBytes, r.Rank); err != nil {
		return nil, fmt.Errorf("agent: state: task record rank: %w", err)
	}
	r.JobBytes, r.RankBytes = nil, nil
	return r, nil
}

// memStore is a stateStore in memory, for tests of the agent's recovery
// logic without a file.
type memStore struct {
	mu    sync.Mutex
	m     map[taskKey][]byte
	usage map[taskKey]usageMark
}

func newMemStore() *memStore { return &memStore{m: map[taskKey][]byte{}} }

func (s *memStore) putUsage(marks map[taskKey]usageMark) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.usage = maps.Clone(marks)
	return nil
}

func (s *memStore) allUsage() (map[taskKey]usageMark, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := maps.Clone(s.usage)
	if out == nil {
		out = map[taskKey]usageMark{}
	}
	return out, nil
}

func (s *memStore) putTask(k taskKey, r *taskRecord) error {
	v, err := encodeRecord(r)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[k] = v
	return nil
}

func (s *memStore) deleteTask(k taskKey) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, k)
	return nil
}

func (s *memStore) allTasks() (map[taskKey]*taskRecord, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[taskKey]*taskRecord{}
	for k, v := range s.m {
		r, err := decodeRecord(v)
		if err != nil {
			return nil, err
		}
		out[k] = r
	}
	return out, nil
}

func (s *memStore) Close() error { return nil }
