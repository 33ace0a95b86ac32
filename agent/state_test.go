package agent

import (
	"errors"
	"path/filepath"
	"testing"

	"github.com/loomhpc/loom/api"
	"google.golang.org/protobuf/proto"
)

func TestStateStores(t *testing.T) {
	stores := map[string]func(t *testing.T) stateStore{
		"bolt": func(t *testing.T) stateStore {
			s, err := openBoltStore(filepath.Join(t.TempDir(), "agent.db"))
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
		"mem": func(*testing.T) stateStore { return newMemStore() },
	}
	for name, open := range stores {
		t.Run(name, func(t *testing.T) {
			s := open(t)
			defer s.Close()
			k1, k2 := taskKey{7, 2, 0, 0}, taskKey{7, 2, 1, 0}
			job := &api.Job{Id: 7, User: "ada", Uid: 1000, Spec: &api.JobSpec{Image: "pytorch"}, Allocation: &api.Allocation{Generation: 2}}
			rec := &taskRecord{Job: job, Rank: &api.Rank{Rank: 1, Node: "n1", GpuUuids: []string{"GPU-1"}}, Stdout: "/o", Stderr: "/e", StartedUnixMs: 42}
			for _, k := range []taskKey{k1, k2} {
				if err := s.putTask(k, rec); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.deleteTask(k1); err != nil {
				t.Fatal(err)
			}
			all, err := s.allTasks()
			if err != nil {
				t.Fatal(err)
			}
			if len(all) != 1 || all[k2] == nil {
				t.Fatalf("allTasks() = %v, want only %v", all, k2)
			}
			got := all[k2]
			if !proto.Equal(got.Job, job) || !proto.Equal(got.Rank, rec.Rank) || got.Stdout != "/o" || got.Stderr != "/e" || got.StartedUnixMs != 42 {
				t.Errorf("allTasks()[%v] = %+v, want %+v", k2, got, rec)
			}
		})
	}
}

func TestBoltStoreIsExclusive(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agent.db")
	s, err := openBoltStore(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := openBoltStore(path); !errors.Is(err, errStateLocked) {
		t.Fatalf("second openBoltStore(%s) = %v, want %v", path, err, errStateLocked)
	}
}

func TestParseMount(t *testing.T) {
	tests := []struct {
		in      string
		src     string
		dst     string
		ro      bool
		wantErr bool
	}{
		{in: "/data", src: "/data", dst: "/data"},
		{in: "/scratch/ds:/data:ro", src: "/scratch/ds", dst: "/data", ro: true},
		{in: "/a/../b:/c:rw", src: "/b", dst: "/c"},
		{in: "data:/data", wantErr: true},
		{in: "/a:/b:rx", wantErr: true},
		{in: "/a:/b:ro:x", wantErr: true},
	}
	for _, tt := range tests {
		m, err := ParseMount(tt.in)
		if (err != nil) != tt.wantErr {
			t.Errorf("ParseMount(%q) error = %v, want error %v", tt.in, err, tt.wantErr)
			continue
		}
		if err == nil && (m.Source != tt.src || m.Dest != tt.dst || m.ReadOnly != tt.ro) {
			t.Errorf("ParseMount(%q) = %+v, want {%s %s %v}", tt.in, m, tt.src, tt.dst, tt.ro)
		}
	}
}
