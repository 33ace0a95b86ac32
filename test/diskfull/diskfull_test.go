//go:build e2e

// Package diskfull fills the disk of one of three servers while clients
// submit: its data dir is a small tmpfs, filled to the last byte. The
// other two must keep acknowledging submits, the full one must say in its
// log which file could not be written and why rather than die silently,
// and once the disk is freed and the server restarted it must catch up to
// the same state, in which every acknowledged submit is a job.
package diskfull

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/loomhpc/loom/api"
	"github.com/loomhpc/loom/api/apirpc"
	"github.com/loomhpc/loom/internal/harness"
	"github.com/loomhpc/loom/test/cluster"
	"google.golang.org/grpc"
)

// mountTmpfs mounts a tmpfs of size at dir until the test ends.
func mountTmpfs(t *testing.T, dir, size string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount a tmpfs at %s: %v: %s", dir, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
			exec.Command("umount", "-l", dir).Run()
		}
	})
}

// fill writes zeros to path until the file system is full, and returns
// how many bytes it wrote.
func fill(t *testing.T, path string) int64 {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	var n int64
	for {
		k, err := f.Write(buf)
		n += int64(k)
		if errors.Is(err, syscall.ENOSPC) {
			return n
		}
		if err != nil {
			t.Fatalf("fill %s: %v", path, err)
		}
	}
}

func TestFullDiskLosesNoAcknowledgedSubmit(t *testing.T) {
	harness.Require(t, "root (to mount a tmpfs)", os.Geteuid() == 0)
	dir := t.TempDir()
	opts := harness.ServerOptions{PKI: cluster.PKI(t, dir), GossipKeyFile: cluster.GossipKeyFile(t, dir)}
	hs := make([]*harness.Server, 3)
	for i := range hs {
		s, err := harness.NewServer(cluster.Binary(t), dir, fmt.Sprintf("s%d", i), "")
		if err != nil {
			t.Fatal(err)
		}
		hs[i] = s
	}
	full := hs[2]
	mountTmpfs(t, full.DataDir, "32m")
	var servers []*cluster.Server
	for i, s := range hs {
		args, err := opts.Args(hs, i)
		if err != nil {
			t.Fatal(err)
		}
		s.Args = args
		if err := s.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Kill) // before the unmount, which was registered earlier
		servers = append(servers, &cluster.Server{Server: s})
	}
	cluster.StartGossipAgent(t, dir, "node1", "dgx-h100", 29500, servers)
	t.Cleanup(func() {
		if t.Failed() {
			for _, s := range servers {
				t.Log(s.Tail())
			}
		}
	})
	var conns []*grpc.ClientConn
	sub := cluster.NewSubmitter()
	var ops []apirpc.OperatorClient
	var jobs []apirpc.JobServiceClient
	for _, a := range cluster.Clients(servers) {
		cc, err := harness.Dial(a)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, cc)
		jobs = append(jobs, apirpc.NewJobServiceClient(cc))
		ops = append(ops, apirpc.NewOperatorClient(cc))
	}
	defer func() {
		for _, cc := range conns {
			cc.Close()
		}
	}()
	sub.SetServers(jobs...)
	cluster.WaitFor(t, "a leader", 30*time.Second, func() bool { l, _ := harness.Leader(context.Background(), ops); return l >= 0 })

	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() { defer wg.Done(); sub.Run(ctx, w) }()
	}
	defer func() { stop(); wg.Wait() }()
	cluster.WaitFor(t, "submits to flow", 30*time.Second, func() bool { return sub.Count() >= 100 })

	// Fill a follower's disk: a leader that cannot write steps down and
	// may be elected again, which is another test. Restarting it hands
	// leadership to another server.
	if l, _ := harness.Leader(context.Background(), ops); l == 2 {
		full.Kill()
		if err := full.Start(); err != nil {
			t.Fatal(err)
		}
		cluster.WaitFor(t, "another server to lead", 30*time.Second, func() bool {
			l, _ := harness.Leader(context.Background(), ops)
			return l >= 0 && l != 2
		})
	}
	filler := filepath.Join(full.DataDir, "filler")
	wrote := fill(t, filler)
	atFill := sub.Count()
	t.Logf("filled %s with %d bytes after %d acknowledged submits", full.DataDir, wrote, atFill)

	// The full server must say which file it could not write, and why.
	var line string
	cluster.WaitFor(t, "the full server to report the full disk in its log", 30*time.Second, func() bool {
		b, _ := os.ReadFile(full.Log)
		for _, l := range strings.Split(string(b), "\n") {
			if strings.Contains(l, "no space left on device") {
				line = l
				return true
			}
		}
		return false
	})
	t.Logf("the full server reported: %s", line)
	if !strings.Contains(line, full.DataDir) {
		t.Errorf("the full disk's error names no file under %s: %s", full.DataDir, line)
	}
	// The other two are a quorum: submits go on being acknowledged.
	cluster.WaitFor(t, "200 more acknowledged submits with the disk full", 60*time.Second, func() bool {
		return sub.Count() >= atFill+200
	})
	t.Logf("with s2's disk full: %d acknowledged submits; s2 still running: %v", sub.Count()-atFill, !full.Exited())
	stop()
	wg.Wait()

	// Free the disk and restart the server: it must catch up.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	full.Kill()
	if err := full.Start(); err != nil {
		t.Fatal(err)
	}
	hashes := cluster.WaitSameState(t, "the three servers to hold the same state", 60*time.Second, ops)
	t.Logf("same state on all three: %v", hashes)

	// Every acknowledged submit is a job, read from the restarted server.
	cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := jobs[2].ListJobs(cctx, &api.ListJobsRequest{All: true, Consistent: true})
	if err != nil {
		t.Fatal(err)
	}
	if lost := sub.Missing(r.Jobs); len(lost) > 0 {
		t.Fatalf("%d of %d acknowledged submits are not jobs after the restart, e.g. job %d", len(lost), sub.Count(), lost[0].ID)
	}
	t.Logf("all %d acknowledged submits are jobs", sub.Count())
}
