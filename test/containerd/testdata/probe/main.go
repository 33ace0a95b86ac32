// Command probe is the program of the containerd end-to-end tests' image:
// statically linked, it reports what a rank sees from inside its container
// and misbehaves on request.
//
//	probe id            print uid, gid, groups, CUDA_VISIBLE_DEVICES, memory limit
//	probe sleep SECS    sleep, ignoring nothing
//	probe trap SECS     sleep, printing "got SIGUSR1" for each SIGUSR1
//	probe alloc MB      touch MB megabytes of memory, then exit 0
//	probe tick N        print N numbered lines, 100 ms apart
//	probe mounts        read /data/input.txt, try to write /data, write $LOOM_RESULT_DIR/rank-$RANK.txt
//	probe cat FILE...   print files
//	probe ls DIR...     list directories
package main

import (
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "probe: id | sleep SECS | alloc MB | tick N")
		os.Exit(2)
	}
	arg := func() int {
		n, _ := strconv.Atoi(os.Args[2])
		return n
	}
	switch os.Args[1] {
	case "id":
		groups, _ := syscall.Getgroups()
		fmt.Printf("rank=%s uid=%d gid=%d groups=%v cuda=%s nvidia=%s mem_limit=%s cpu_quota=%s\n",
			os.Getenv("RANK"), os.Getuid(), os.Getgid(), groups,
			os.Getenv("CUDA_VISIBLE_DEVICES"), os.Getenv("NVIDIA_VISIBLE_DEVICES"), memLimit(), cpuQuota())
	case "mounts":
		// Read the input, fail to write next to it, write a result.
		in, err := os.ReadFile("/data/input.txt")
		fmt.Printf("input=%q err=%v\n", in, err)
		err = os.WriteFile("/data/scribble", []byte("x"), 0o644)
		fmt.Printf("write_data_err=%v\n", err != nil)
		res := os.Getenv("LOOM_RESULT_DIR") + "/rank-" + os.Getenv("RANK") + ".txt"
		err = os.WriteFile(res, []byte("result of rank "+os.Getenv("RANK")+"\n"), 0o644)
		fmt.Printf("result=%s err=%v\n", res, err)
	case "sleep":
		time.Sleep(time.Duration(arg()) * time.Second)
	case "trap":
		ch := make(chan os.Signal, 4)
		signal.Notify(ch, syscall.SIGUSR1)
		end := time.After(time.Duration(arg()) * time.Second)
		for {
			select {
			case <-ch:
				fmt.Println("got SIGUSR1")
			case <-end:
				return
			}
		}
	case "alloc":
		var keep [][]byte
		for i := 0; i < arg(); i++ {
			b := make([]byte, 1<<20)
			for j := range b {
				b[j] = byte(j)
			}
			keep = append(keep, b)
		}
		fmt.Println("allocated", len(keep), "MB")
	case "cat":
		for _, f := range os.Args[2:] {
			b, err := os.ReadFile(f)
			fmt.Printf("%s: %q %v\n", f, b, err)
		}
	case "ls":
		for _, d := range os.Args[2:] {
			ents, err := os.ReadDir(d)
			fmt.Println(d, err)
			for _, e := range ents {
				fmt.Println(" ", e.Name())
			}
		}
	case "tick":
		for i := 1; i <= arg(); i++ {
			fmt.Printf("tick %d\n", i)
			time.Sleep(100 * time.Millisecond)
		}
	}
}

// cpuQuota reads the container's CFS quota in microseconds per period
// (cgroup v1 cpu.cfs_quota_us, or v2 cpu.max's first field).
func cpuQuota() string {
	if b, err := os.ReadFile("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"); err == nil {
		return strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/sys/fs/cgroup/cpu.max"); err == nil {
		return strings.Fields(string(b))[0]
	}
	return "unknown"
}

// memLimit reads the container's memory limit in bytes (cgroup v1 or v2).
func memLimit() string {
	for _, f := range []string{"/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory.max"} {
		if b, err := os.ReadFile(f); err == nil {
			return strings.TrimSpace(string(b))
		}
	}
	return "unknown"
}
