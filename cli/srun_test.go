package cli

import (
	"context"
	"io"
	"net"
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc"

	"github.com/loomhpc/loom/api"
	"github.com/loomhpc/loom/api/apirpc"
)

// srunJob is job 1, the id the fake server gives the first submit.
func srunJob(state api.JobState, code int32) *api.Job {
	return &api.Job{Id: 1, State: state, ExitCode: code, Allocation: &api.Allocation{}}
}

func TestSrun(t *testing.T) {
	logs := []*api.LogChunk{
		{Rank: 0, Data: []byte("step=1 loss=2.3\n")},
		{Rank: 1, Data: []byte("ready\n")},
	}
	tests := []struct {
		name     string
		args     []string
		job      *api.Job
		wantCode int
		wantOut  string
		wantErr  string
		wantArgv []string
		check    func(t *testing.T, s *api.JobSpec)
	}{
		{
			name: "gang with label", args: []string{"-N", "2", "--ntasks-per-node=2", "--gpus-per-task=1", "-t", "10", "-J", "train", "--label", "./bin/mnist", "--epochs", "1"},
			job:     srunJob(api.JobState_COMPLETED, 0),
			wantOut: "0: step=1 loss=2.3\n1: ready\n", wantArgv: []string{"./bin/mnist", "--epochs", "1"},
			check: func(t *testing.T, s *api.JobSpec) {
				if s.GetNodesMin() != 2 || s.GetNtasksPerNode() != 2 || s.GetGpusPerTask() != 1 || s.GetTimeLimitS() != 600 || s.GetName() != "train" {
					t.Errorf("spec = %v, want 2 nodes, 2 tasks per node, 1 GPU per task, 600 s, name train", s)
				}
				if s.GetScript() != "" || s.GetWorkingDir() != "/home/alice/work" || s.GetOutput() != "srun-%j-%t.out" {
					t.Errorf("spec script %q, dir %q, output %q; want none, /home/alice/work, srun-%%j-%%t.out", s.GetScript(), s.GetWorkingDir(), s.GetOutput())
				}
			},
		},
		{
			name: "no label, name from the command", args: []string{"-n", "2", "--chdir=runs", "--export=FOO=1", "hostname"},
			job:     srunJob(api.JobState_COMPLETED, 0),
			wantOut: "step=1 loss=2.3\nready\n", wantArgv: []string{"hostname"},
			check: func(t *testing.T, s *api.JobSpec) {
				if s.GetName() != "hostname" || s.GetNtasks() != 2 || s.GetWorkingDir() != "/home/alice/work/runs" {
					t.Errorf("spec = %v, want name hostname, 2 tasks, dir /home/alice/work/runs", s)
				}
				if s.GetEnv()["FOO"] != "1" || s.GetEnv()["HOME"] != "" {
					t.Errorf("env = %v, want FOO=1 and no HOME", s.GetEnv())
				}
			},
		},
		{
			name: "options after the command belong to it", args: []string{"-o", "run-%t.log", "python", "-N", "3"},
			job:     srunJob(api.JobState_COMPLETED, 0),
			wantOut: "step=1 loss=2.3\nready\n", wantArgv: []string{"python", "-N", "3"},
			check: func(t *testing.T, s *api.JobSpec) {
				if s.GetNodesMin() != 0 || s.GetOutput() != "run-%t.log" {
					t.Errorf("spec = %v, want no node count and output run-%%t.log", s)
				}
			},
		},
		{
			name: "failed job's exit code", args: []string{"false"},
			job:      srunJob(api.JobState_FAILED, 3),
			wantCode: 3, wantOut: "step=1 loss=2.3\nready\n", wantArgv: []string{"false"},
			wantErr: "srun: error: job 1 ended FAILED, exit code 3:0\n",
		},
		{
			name: "timeout without a code", args: []string{"sleep", "1000"},
			job:      srunJob(api.JobState_TIMEOUT, 0),
			wantCode: 1, wantOut: "step=1 loss=2.3\nready\n", wantArgv: []string{"sleep", "1000"},
			wantErr: "srun: error: job 1 ended TIMEOUT, exit code 0:0\n",
		},
		{
			name: "no command", args: []string{"-N", "1"},
			wantCode: 1,
			wantErr:  "srun: error: no command given: srun [OPTIONS...] COMMAND [ARGS...]\nTry \"srun --help\" for more information\n",
		},
		{
			name: "bad option value", args: []string{"-t", "abc", "true"},
			wantCode: 1,
			wantErr:  "srun: error: --time=abc: minutes \"abc\" is not a number (want M, M:S, H:M:S, D-H, D-H:M, D-H:M:S or UNLIMITED)\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeServer{logs: logs}
			if tt.job != nil {
				f.jobs = []*api.Job{tt.job}
			}
			te := newTestEnv("srun", f.start(t))
			if code := te.run(t, tt.args...); code != tt.wantCode {
				t.Errorf("srun %q exited %d, want %d (stderr %q)", tt.args, code, tt.wantCode, te.err)
			}
			if got := te.out.String(); got != tt.wantOut {
				t.Errorf("srun %q printed %q, want %q", tt.args, got, tt.wantOut)
			}
			if got := te.err.String(); got != tt.wantErr {
				t.Errorf("srun %q stderr = %q, want %q", tt.args, got, tt.wantErr)
			}
			if tt.wantArgv == nil {
				if len(f.submits) != 0 {
					t.Errorf("srun %q submitted %v, want nothing", tt.args, f.submits)
				}
				return
			}
			if len(f.submits) != 1 {
				t.Fatalf("srun %q made %d submits, want 1", tt.args, len(f.submits))
			}
			s := f.submits[0].GetSpec()
			if !slices.Equal(s.GetArgv(), tt.wantArgv) {
				t.Errorf("srun %q argv = %q, want %q", tt.args, s.GetArgv(), tt.wantArgv)
			}
			if tt.check != nil {
				tt.check(t, s)
			}
		})
	}
}

// blockingLogs is a fake whose log stream stays open until the client goes
// away, like a running job's.
type blockingLogs struct{ *fakeServer }

func (b *blockingLogs) StreamLogs(req *api.LogsRequest, stream grpc.ServerStreamingServer[api.LogChunk]) error {
	if err := stream.Send(&api.LogChunk{Rank: 0, Data: []byte("epoch 1\n")}); err != nil {
		return err
	}
	<-stream.Context().Done()
	return stream.Context().Err()
}

func TestSrunInterruptCancelsJob(t *testing.T) {
	f := &fakeServer{jobs: []*api.Job{srunJob(api.JobState_RUNNING, 0)}}
	b := &blockingLogs{f}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	apirpc.RegisterJobServiceServer(srv, b)
	go srv.Serve(lis)
	defer srv.Stop()

	te := newTestEnv("srun", lis.Addr().String())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// Ctrl-C as soon as the running job's first line is printed.
	te.stdout = &onWrite{w: te.out, f: cancel}
	if code := run(ctx, te.env, []string{"-N", "2", "./train"}); code != 130 {
		t.Errorf("srun exited %d after an interrupt, want 130 (stderr %q)", code, te.err)
	}
	if got, want := te.out.String(), "epoch 1\n"; got != want {
		t.Errorf("srun printed %q, want %q", got, want)
	}
	if !strings.Contains(te.err.String(), "job 1 cancelled") {
		t.Errorf("srun stderr = %q, want it to say job 1 was cancelled", te.err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.cancels) != 1 || !slices.Equal(f.cancels[0].GetJobIds(), []uint64{1}) {
		t.Errorf("cancels = %v, want one for job 1", f.cancels)
	}
}

// onWrite calls f after each write to w.
type onWrite struct {
	w io.Writer
	f func()
}

func (o *onWrite) Write(p []byte) (int, error) {
	n, err := o.w.Write(p)
	o.f()
	return n, err
}

// TestStepRefusesNodeChoice: a step inside an allocation refuses the
// options its placement does not read, rather than dropping them.
func TestStepRefusesNodeChoice(t *testing.T) {
	tests := []struct {
		args []string
		want string // "" accepted, else the error
	}{
		{[]string{"-n", "2", "hostname"}, ""},
		{[]string{"-C", "ib", "hostname"}, "--constraint: a step runs on its job's nodes: choose among them with -w/--nodelist or -x/--exclude"},
		{[]string{"--gpus-per-node=1", "--cpus-per-gpu=4", "hostname"}, "--cpus-per-gpu: not supported for a step yet: give -c/--cpus-per-task"},
	}
	for _, tt := range tests {
		te := newTestEnv("srun", "unused")
		o := &sbatchOpts{now: te.now}
		var so stepOpts
		opts := append(sbatchOptions(o), stepOptions(&so)...)
		uses, pos, err := parseArgs(opts, tt.args, parseConfig{stopAtArg: true})
		if err != nil {
			t.Fatalf("parseArgs(%q): %v", tt.args, err)
		}
		_, err = buildStepSpec(te.env, o, &so, uses, pos)
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("srun %q in an allocation = %v, want a step", tt.args, err)
		case tt.want != "" && (err == nil || err.Error() != tt.want):
			t.Errorf("srun %q in an allocation = %v, want %q", tt.args, err, tt.want)
		}
	}
}
