package devcluster

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/loomhpc/loom/api"
)

// TestOpenMode runs jobs that write the same output files: the default
// (truncate) leaves only the last job's lines in a per-rank file,
// --open-mode=append keeps both, and a file all ranks share keeps every
// rank's line.
func TestOpenMode(t *testing.T) {
	_, jobs := startCluster(t, 2)
	dir := t.TempDir()
	run := func(word, output, mode string, ntasks uint32) {
		t.Helper()
		id := submit(t, jobs, &api.JobSpec{
			Name: "openmode", NodesMin: 1, NtasksPerNode: ntasks, WorkingDir: dir,
			Output: output, OpenMode: mode, EveryRank: true,
			Script: "#!/bin/sh\necho " + word + " $RANK\n",
		})
		if j := waitDone(t, jobs, id); j.State != api.JobState_COMPLETED {
			t.Fatalf("job %d ended %s (%s)", id, j.State, j.Reason)
		}
	}
	read := func(name string) string {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}

	run("first", "own-%t.out", "", 1)
	run("second", "own-%t.out", "", 1)
	if got := read("own-0.out"); got != "second 0\n" {
		t.Errorf("default open mode: own-0.out holds %q, want only the second job's line", got)
	}
	run("third", "own-%t.out", api.OpenModeAppend, 1)
	if got := read("own-0.out"); got != "second 0\nthird 0\n" {
		t.Errorf("--open-mode=append: own-0.out holds %q, want the second and third jobs' lines", got)
	}

	// Four ranks, one file: none may erase another's line.
	run("shared", "shared.out", "", 4)
	got := read("shared.out")
	for _, want := range []string{"shared 0\n", "shared 1\n", "shared 2\n", "shared 3\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("shared.out lacks %q: %q", want, got)
		}
	}
}
