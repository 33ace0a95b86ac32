package allreduce

import (
	"os"
	"testing"
)

// TestMain lets the test binary stand in for the loom binary: as a worker
// (first argument netcoll-worker, with NCBENCH_TEST set) and, with
// NCBENCH_MAIN=1, as the benchmark driver itself, so the benchmark can be
// run without cmd/loom: go test -c -o /tmp/ncb.test ./internal/bench/allreduce &&
// NCBENCH_MAIN=1 /tmp/ncb.test -np 4 -b 1K -e 64M -f 4.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == WorkerArg {
		os.Exit(WorkerMain(os.Args[2:]))
	}
	if os.Getenv("NCBENCH_MAIN") == "1" {
		os.Exit(Main(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}
