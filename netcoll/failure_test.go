package netcoll

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/loomhpc/loom/internal/harness"
	"github.com/loomhpc/loom/rankenv"
)

// peerErr asserts that err is an *Error for op naming peer.
func peerErr(t *testing.T, rank int, err error, op string, peer int) {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) {
		t.Errorf("rank %d: error = %v, want *netcoll.Error naming rank %d", rank, err, peer)
		return
	}
	if e.Op != op || e.Peer != peer || e.Rank != rank {
		t.Errorf("rank %d: error = %q (op %q, peer %d), want op %q naming peer %d", rank, err, e.Op, e.Peer, op, peer)
	}
	if !strings.HasPrefix(err.Error(), "netcoll: ") {
		t.Errorf("rank %d: error %q lacks the package prefix", rank, err)
	}
}

func TestAbortFailsEveryRank(t *testing.T) {
	for _, count := range []int{10, 1 << 20} {
		t.Run(strconv.Itoa(count), func(t *testing.T) {
			comms := startRanks(t, 4, nil)
			errs := parallel(comms, func(c *Comm) error {
				if c.Rank() == 2 {
					c.Abort()
					c.Abort() // idempotent
				}
				buf := make([]float32, count)
				return AllReduce(context.Background(), c, buf, buf, Sum)
			})
			for r, err := range errs {
				peerErr(t, r, err, "allreduce", 2)
			}
			if !errors.Is(errs[2], ErrAborted) {
				t.Errorf("rank 2: error = %v, want ErrAborted", errs[2])
			}
			// Sticky: the next call fails the same way, at once.
			errs = parallel(comms, func(c *Comm) error { return c.Barrier(context.Background()) })
			for r, err := range errs {
				peerErr(t, r, err, "barrier", 2)
			}
		})
	}
}

func TestAbortFromAnotherGoroutine(t *testing.T) {
	comms := startRanks(t, 3, nil)
	started := make(chan struct{})
	errs := parallel(comms, func(c *Comm) error {
		if c.Rank() == 1 {
			// Rank 1 never joins; rank 0 is aborted by another goroutine
			// while it waits.
			<-started
			return nil
		}
		if c.Rank() == 0 {
			go func() {
				time.Sleep(50 * time.Millisecond) // let rank 0 block in the call
				c.Abort()
				close(started)
			}()
		}
		buf := make([]int64, 1000)
		return AllReduce(context.Background(), c, buf, buf, Max)
	})
	peerErr(t, 0, errs[0], "allreduce", 0)
	peerErr(t, 2, errs[2], "allreduce", 0)
	// Rank 1 hears the verdict from the store without calling anything.
	select {
	case <-comms[1].verdictCh:
	case <-time.After(10 * time.Second):
		t.Fatal("rank 1 never heard that rank 0 aborted")
	}
	peerErr(t, 1, comms[1].Barrier(context.Background()), "barrier", 0)
}

func TestContextCancelAborts(t *testing.T) {
	comms := startRanks(t, 3, nil)
	errs := parallel(comms, func(c *Comm) error {
		ctx := context.Background()
		if c.Rank() == 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, 100*time.Millisecond)
			defer cancel()
		}
		if c.Rank() == 1 {
			// Rank 1 is late: rank 0's deadline passes first.
			if err := c.Barrier(context.Background()); err == nil {
				return errors.New("barrier unexpectedly succeeded")
			}
			return nil
		}
		buf := make([]float64, 1<<18)
		return AllReduce(ctx, c, buf, buf, Sum)
	})
	if !errors.Is(errs[0], context.DeadlineExceeded) {
		t.Errorf("rank 0: error = %v, want context.DeadlineExceeded", errs[0])
	}
	peerErr(t, 0, errs[0], "allreduce", 0)
	peerErr(t, 2, errs[2], "allreduce", 0)
	if errs[1] != nil {
		t.Errorf("rank 1: %v", errs[1])
	}

	// A context that is already done does not fail the communicator.
	comms = startRanks(t, 2, nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := comms[0].Barrier(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Barrier(cancelled ctx) = %v, want context.Canceled", err)
	}
	noErrors(t, "Barrier after a cancelled call", parallel(comms, func(c *Comm) error { return c.Barrier(context.Background()) }))
}

// TestStalledPeer: one rank never enters the collective; the others time
// out and every one of them names the stalled rank (the store picks the
// rank that is blamed but reports nothing).
func TestStalledPeer(t *testing.T) {
	for _, tc := range []struct {
		transport, algo string
		count           int
	}{{"tcp", "ring", 1 << 18}, {"tcp", "rd", 100}, {"shm", "ring", 1 << 18}, {"shm", "rd", 100}} {
		t.Run(tc.transport+"/"+tc.algo, func(t *testing.T) {
			comms := startRanks(t, 5, func(c *Config) {
				c.Timeout = 300 * time.Millisecond
				c.Algo = tc.algo
				c.Transport = tc.transport
			})
			const stalled = 2
			errs := parallel(comms, func(c *Comm) error {
				if c.Rank() == stalled {
					return nil
				}
				buf := make([]float32, tc.count)
				return AllReduce(context.Background(), c, buf, buf, Sum)
			})
			for r, err := range errs {
				if r != stalled {
					peerErr(t, r, err, "allreduce", stalled)
					if !errors.Is(err, ErrPeerFailed) && !errors.Is(err, ErrTimeout) {
						t.Errorf("rank %d: %v, want ErrPeerFailed or ErrTimeout", r, err)
					}
				}
			}
			peerErr(t, stalled, comms[stalled].Barrier(context.Background()), "barrier", stalled)
		})
	}
}

func TestEpochMismatchRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	errs := make(chan error, 2)
	for r := range 2 {
		go func() {
			cfg := Config{Rank: r, WorldSize: 2, MasterAddr: "127.0.0.1", MasterPort: port, Secret: testSecret,
				Epoch: uint64(7 + r), ConnectTimeout: time.Second}
			if r == 0 {
				cfg.StoreListener = ln
			}
			c, err := Init(context.Background(), cfg)
			if c != nil {
				c.Close()
			}
			errs <- fmt.Errorf("rank %d: %w", r, err)
		}()
	}
	var sawEpoch bool
	for range 2 {
		err := <-errs
		if errors.Unwrap(err) == nil {
			t.Errorf("Init with mismatched epochs succeeded: %v", err)
		}
		if strings.Contains(err.Error(), "epoch") {
			sawEpoch = true
		}
	}
	if !sawEpoch {
		t.Errorf("no rank reported the epoch mismatch")
	}
}

func TestConfigFromEnv(t *testing.T) {
	t.Setenv(rankenv.Rank, "3")
	t.Setenv(rankenv.WorldSize, "8")
	t.Setenv(rankenv.LocalRank, "1")
	t.Setenv(rankenv.MasterAddr, "node01")
	t.Setenv(rankenv.MasterPort, "29500")
	t.Setenv(rankenv.LoomGeneration, "4")
	t.Setenv(rankenv.LoomJobSecret, "00112233445566778899aabbccddeeff")
	t.Setenv("NETCOLL_CHUNK", "1M")
	t.Setenv("NETCOLL_NSOCKS", "4")
	t.Setenv("NETCOLL_ALGO", "ring")
	t.Setenv("NETCOLL_TIMEOUT", "45s")
	cfg, err := ConfigFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Rank != 3 || cfg.WorldSize != 8 || cfg.LocalRank != 1 || cfg.MasterAddr != "node01" ||
		cfg.MasterPort != 29500 || cfg.Epoch != 4 || cfg.ChunkBytes != 1<<20 || cfg.NSocks != 4 ||
		cfg.Algo != "ring" || cfg.Timeout != 45*time.Second || len(cfg.Secret) != 16 || cfg.Insecure {
		t.Errorf("ConfigFromEnv() = %+v", cfg)
	}
	t.Setenv(rankenv.Rank, "8")
	if _, err := ConfigFromEnv(); err == nil || !strings.Contains(err.Error(), "RANK=8") {
		t.Errorf("ConfigFromEnv(RANK=8 of 8) = %v, want an error naming RANK", err)
	}
	t.Setenv(rankenv.Rank, "x")
	if _, err := ConfigFromEnv(); err == nil || !strings.Contains(err.Error(), "RANK") {
		t.Errorf("ConfigFromEnv(RANK=x) = %v, want an error naming RANK", err)
	}
}

// A rank without the job's secret is refused unless it opts out of
// authentication explicitly.
func TestConfigFromEnvSecret(t *testing.T) {
	t.Setenv(rankenv.Rank, "1")
	t.Setenv(rankenv.WorldSize, "2")
	t.Setenv(rankenv.MasterAddr, "node01")
	t.Setenv(rankenv.MasterPort, "29500")
	for _, c := range []struct {
		secret, insecure string
		wantErr          string // "" for none
		wantInsecure     bool
	}{
		{"", "", "LOOM_JOB_SECRET is not set", false},
		{"", "1", "", true},
		{"", "yes", "LOOM_JOB_SECRET is not set", false},
		{"0011", "", "LOOM_JOB_SECRET: 2 bytes", false},
		{"not hex at all, not hex at all!!", "1", "LOOM_JOB_SECRET: not a hex string", false},
		{"00112233445566778899aabbccddeeff", "1", "", false}, // a secret wins over the opt-out
	} {
		t.Setenv(rankenv.LoomJobSecret, c.secret)
		t.Setenv("NETCOLL_INSECURE", c.insecure)
		cfg, err := ConfigFromEnv()
		switch {
		case c.wantErr == "" && err != nil:
			t.Errorf("ConfigFromEnv(secret %q, NETCOLL_INSECURE=%q) = %v, want no error", c.secret, c.insecure, err)
		case c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)):
			t.Errorf("ConfigFromEnv(secret %q, NETCOLL_INSECURE=%q) = %v, want an error containing %q", c.secret, c.insecure, err, c.wantErr)
		case err == nil && cfg.Insecure != c.wantInsecure:
			t.Errorf("ConfigFromEnv(secret %q, NETCOLL_INSECURE=%q).Insecure = %v, want %v", c.secret, c.insecure, cfg.Insecure, c.wantInsecure)
		}
	}
}

// Process-level tests: the test binary re-executes itself as a rank.

const workerEnv = "NETCOLL_TEST_WORKER"

// testWorker runs large allreduces until one fails, then prints the error.
func testWorker() int {
	c, err := FromEnv(context.Background())
	if err != nil {
		fmt.Println("INIT-ERROR", err)
		return 1
	}
	defer c.Close()
	buf := make([]float32, 4<<20) // 16 MiB
	for i := 0; ; i++ {
		if err := AllReduce(context.Background(), c, buf, buf, Sum); err != nil {
			fmt.Println("ERROR", err)
			return 0
		}
		if i == 0 {
			fmt.Println("READY")
		}
	}
}

// TestKilledRankNamedByAll kills one rank's process in the middle of large
// allreduces and checks that every other rank fails within 5 s with an
// error naming it.
func TestKilledRankNamedByAll(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("needs Linux")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		transport string
		victim    int
	}{{"tcp", 2}, {"tcp", 0}, {"shm", 1}, {"shm", 0}} {
		t.Run(fmt.Sprintf("%s/kill=%d", tc.transport, tc.victim), func(t *testing.T) {
			const n = 4
			port := harness.Port(t)
			type proc struct {
				cmd   *exec.Cmd
				lines chan string
			}
			procs := make([]proc, n)
			secret := rankenv.NewJobSecret()
			for r := range n {
				cmd := exec.Command(exe, "-test.run=^$")
				cmd.Env = append(os.Environ(), workerEnv+"=1", rankenv.LoomJobSecret+"="+secret,
					rankenv.Rank+"="+strconv.Itoa(r), rankenv.WorldSize+"="+strconv.Itoa(n),
					rankenv.MasterAddr+"=127.0.0.1", rankenv.MasterPort+"="+strconv.Itoa(port),
					"NETCOLL_TRANSPORT="+tc.transport)
				out, err := cmd.StdoutPipe()
				if err != nil {
					t.Fatal(err)
				}
				cmd.Stderr = os.Stderr
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				lines := make(chan string, 16)
				go func() {
					sc := bufio.NewScanner(out)
					for sc.Scan() {
						lines <- sc.Text()
					}
					close(lines)
				}()
				procs[r] = proc{cmd, lines}
			}
			defer func() {
				for _, p := range procs {
					p.cmd.Process.Kill()
					p.cmd.Wait()
				}
			}()
			for r, p := range procs {
				select {
				case l := <-p.lines:
					if l != "READY" {
						t.Fatalf("rank %d: %q, want READY", r, l)
					}
				case <-time.After(60 * time.Second):
					t.Fatalf("rank %d did not finish its first allreduce", r)
				}
			}
			procs[tc.victim].cmd.Process.Signal(syscall.SIGKILL)
			deadline := time.After(5 * time.Second)
			for r, p := range procs {
				if r == tc.victim {
					continue
				}
				select {
				case l := <-p.lines:
					t.Logf("rank %d: %s", r, l)
					want := fmt.Sprintf("ERROR netcoll: allreduce on rank %d: peer rank %d: ", r, tc.victim)
					if !strings.HasPrefix(l, want) {
						t.Errorf("rank %d printed %q, want a line starting %q", r, l, want)
					}
				case <-deadline:
					t.Errorf("rank %d: no error within 5 s of killing rank %d", r, tc.victim)
				}
			}
		})
	}
}
