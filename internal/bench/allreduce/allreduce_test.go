package allreduce

import (
	"bytes"
	"os"
	"strconv"
	"strings"
	"testing"
)

// TestMainTable runs the benchmark end to end with the test binary as the
// worker, and checks the shape of what it prints, not its speed.
func TestMainTable(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		op, transport string
		np            int
	}{{"allreduce", "tcp", 2}, {"allgather", "shm", 3}, {"reducescatter", "tcp", 3}, {"broadcast", "shm", 2}} {
		t.Run(tc.op+"/"+tc.transport, func(t *testing.T) {
			var out, errb bytes.Buffer
			args := []string{"-np", strconv.Itoa(tc.np), "-b", "1K", "-e", "64K", "-f", "8", "--op", tc.op,
				"--transport", tc.transport, "--iters", "3", "--warmup", "1", "--worker", exe + " " + WorkerArg}
			if code := Main(args, &out, &errb); code != 0 {
				t.Fatalf("Main(%q) = %d, stderr:\n%s", args, code, errb.String())
			}
			lines := strings.Split(strings.TrimSpace(out.String()), "\n")
			var rows int
			keys := map[string]float64{}
			for _, l := range lines {
				f := strings.Fields(l)
				switch {
				case strings.HasPrefix(l, "#"):
				case len(f) == 8 && f[0] != "size":
					rows++
					size, _ := strconv.Atoi(f[0])
					algbw, _ := strconv.ParseFloat(f[6], 64)
					busbw, _ := strconv.ParseFloat(f[7], 64)
					want := algbw * busFactor(tc.op, tc.np)
					if d := busbw - want; d > 0.002 || d < -0.002 {
						t.Errorf("size %d: busbw %v, want algbw %v × %v", size, busbw, algbw, busFactor(tc.op, tc.np))
					}
				case strings.Contains(l, "="):
					k, v, _ := strings.Cut(l, "=")
					x, err := strconv.ParseFloat(v, 64)
					if err != nil {
						t.Errorf("summary line %q: value is not a number", l)
					}
					keys[k] = x
				}
			}
			if rows != 3 { // 1K, 8K, 64K
				t.Errorf("got %d table rows, want 3:\n%s", rows, out.String())
			}
			for _, k := range []string{"raw_ring_GBps", "busbw_GBps", "rtt_us", "tcp_rtt_us", "small_latency_over_rtt_log2n", "busbw_ratio"} {
				if _, ok := keys[k]; !ok {
					t.Errorf("no %s= line in:\n%s", k, out.String())
				}
			}
			if last := lines[len(lines)-1]; !strings.HasPrefix(last, "busbw_ratio=") {
				t.Errorf("last line = %q, want busbw_ratio=...", last)
			}
		})
	}
}

func TestBusFactor(t *testing.T) {
	for _, tc := range []struct {
		op   string
		n    int
		want float64
	}{{"allreduce", 4, 1.5}, {"allreduce", 2, 1}, {"allgather", 4, 0.75}, {"reducescatter", 2, 0.5}, {"broadcast", 8, 1}} {
		if got := busFactor(tc.op, tc.n); got != tc.want {
			t.Errorf("busFactor(%q, %d) = %v, want %v", tc.op, tc.n, got, tc.want)
		}
	}
}

func TestMainRejectsBadFlags(t *testing.T) {
	for _, args := range [][]string{{"-np", "0"}, {"--op", "alltoall"}, {"-b", "1X"}, {"-f", "1"}} {
		var out, errb bytes.Buffer
		if code := Main(args, &out, &errb); code == 0 || errb.Len() == 0 {
			t.Errorf("Main(%q) = %d with stderr %q, want a non-zero code and a message", args, code, errb.String())
		}
	}
}
