package main

import (
	"fmt"
	"io"
	"os"
)

// Wired to netcoll/ncbench once that package lands.

func netcollWorker(args []string) int {
	fmt.Fprintln(os.Stderr, "loom netcoll-worker: not built yet")
	return 1
}

func benchAllreduce(args []string, stdout, stderr io.Writer) int {
	fmt.Fprintln(stderr, "loom bench allreduce: not built yet")
	return 1
}
