package server

import (
	"fmt"
	"testing"

	"github.com/loomhpc/loom/api"
	"github.com/loomhpc/loom/auth"
	"google.golang.org/protobuf/proto"
)

// BenchmarkSummary times what a listing does to one pending job of
// sbatch's usual size (a script and an exported environment of 1.5 KB).
func BenchmarkSummary(b *testing.B) {
	env := map[string]string{}
	for i := range 40 {
		env[fmt.Sprintf("VAR_%d", i)] = "/some/path/value/of/about/forty/bytes"
	}
	j := &api.Job{Id: 7, User: "alice", Uid: 1000, State: api.JobState_PENDING, Reason: "JobHeldUser",
		Spec:         &api.JobSpec{Name: "wrap", Script: "#!/bin/sh\ntrue\n", Env: env, WorkingDir: "/home/alice", Output: "slurm-%j.out", Partition: "batch"},
		SubmitUnixMs: 1, Priority: 10, Secret: "00112233"}
	s := &Server{cfg: Config{Policy: auth.Policy{}}}
	id := auth.Identity{UID: 1000}
	b.Run("summary", func(b *testing.B) {
		for b.Loop() {
			_ = s.summary(id, j)
		}
	})
	b.Run("summary+marshal", func(b *testing.B) {
		for b.Loop() {
			_, _ = proto.Marshal(s.summary(id, j))
		}
	})
	b.Run("redact+marshal", func(b *testing.B) {
		for b.Loop() {
			_, _ = proto.Marshal(s.redact(id, j))
		}
	})
}
