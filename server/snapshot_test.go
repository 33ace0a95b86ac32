package server

import (
	"bytes"
	"testing"

	"github.com/loomhpc/loom/api"
	"google.golang.org/protobuf/proto"
)

func TestKeepJobIDsUnique(t *testing.T) {
	saved, err := proto.MarshalOptions{Deterministic: true}.Marshal(&api.StateSnapshot{Index: 7, NextJobId: 5, Jobs: []*api.Job{{Id: 4}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		clusterNext, want uint64
	}{
		{1, 5}, // a fresh cluster: the state as saved
		{5, 5},
		{9, 9}, // ids 5-8 were given out after the save: never again
	} {
		b, err := keepJobIDsUnique(saved, tc.clusterNext)
		if err != nil {
			t.Fatal(err)
		}
		var ss api.StateSnapshot
		if err := proto.Unmarshal(b, &ss); err != nil {
			t.Fatal(err)
		}
		if ss.NextJobId != tc.want || ss.Index != 7 || len(ss.Jobs) != 1 {
			t.Errorf("keepJobIDsUnique(next 5, cluster's next %d) = next %d, index %d, %d jobs; want next %d, the rest as saved",
				tc.clusterNext, ss.NextJobId, ss.Index, len(ss.Jobs), tc.want)
		}
		if tc.want == 5 && !bytes.Equal(b, saved) {
			t.Errorf("keepJobIDsUnique(next 5, cluster's next %d) re-encoded a state it did not need to change", tc.clusterNext)
		}
	}
}
