//go:build e2e

package isolation

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/loomhpc/loom/api"
)

// partitionTmpConfig has one partition that turns the node's private
// /tmp off and one that asks for it.
const partitionTmpConfig = `
[[partition]]
name = "shared"
default = true
private_tmp = false

[[partition]]
name = "secure"
private_tmp = true
`

// TestPartitionChoosesPrivateTmp: on a node whose agent gives jobs a
// private /tmp by default (--private-tmp), a job in a partition with
// private_tmp = false sees the host's /tmp, and one in a partition with
// private_tmp = true does not.
func TestPartitionChoosesPrivateTmp(t *testing.T) {
	conf := filepath.Join(t.TempDir(), "loom.toml")
	if err := os.WriteFile(conf, []byte(partitionTmpConfig), 0o644); err != nil {
		t.Fatal(err)
	}
	e := newEnvWith(t, "--config", conf)
	w := e.work("ptmp")
	marker := "loom-host-tmp-" + strconv.Itoa(os.Getpid())
	if err := os.WriteFile("/tmp/"+marker, []byte("host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove("/tmp/" + marker) })
	script := fmt.Sprintf("#!/bin/sh\nif [ -e /tmp/%s ]; then echo host; else echo private; fi\n", marker)
	for _, tt := range []struct {
		partition, want string
		private         bool
	}{
		{"shared", "host\n", false},
		{"secure", "private\n", true},
	} {
		out := tt.partition + ".txt"
		id := e.submit(&api.JobSpec{NodesMin: 1, NodesMax: 1, NtasksPerNode: 1, Partition: tt.partition, WorkingDir: w, Output: out, Script: script})
		j := e.waitEnd(id)
		if j.State != api.JobState_COMPLETED {
			t.Fatalf("job in %s ended %s (%s)", tt.partition, j.State, j.Reason)
		}
		if j.Spec.PrivateTmp == nil || *j.Spec.PrivateTmp != tt.private {
			t.Errorf("job in %s: spec private_tmp = %v, want %v", tt.partition, j.Spec.PrivateTmp, tt.private)
		}
		if got := read(t, filepath.Join(w, out)); got != tt.want {
			t.Errorf("job in partition %s sees /tmp as %q, want %q", tt.partition, got, tt.want)
		}
	}
}
