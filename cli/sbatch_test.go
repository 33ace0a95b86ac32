package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"

	"github.com/loomhpc/loom/api"
)

// writeScript writes a batch script into a temporary directory and
// returns its path.
func writeScript(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "job.sh")
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// submitted runs sbatch and returns the one spec the server received.
func submitted(t *testing.T, te testEnv, f *fakeServer, args ...string) *api.JobSpec {
	t.Helper()
	if code := te.run(t, args...); code != 0 {
		t.Fatalf("sbatch %q exited %d, stderr:\n%s", args, code, te.err)
	}
	if len(f.submits) != 1 {
		t.Fatalf("sbatch %q made %d submits, want 1", args, len(f.submits))
	}
	return f.submits[0].GetSpec()
}

func TestSbatchSpec(t *testing.T) {
	const header = "#!/bin/bash\n"
	allEnv := map[string]string{"HOME": "/home/alice", "PATH": "/usr/bin:/bin", "LOOM_TIMEOUT": "20s"}
	tests := []struct {
		name   string
		script string   // "" for no script file
		args   []string // before the script path
		stdin  string
		env    []string
		want   *api.JobSpec // Script, WorkingDir and Env are filled in unless set
	}{
		{
			name: "directives",
			script: header + `# a comment
#SBATCH -J train
#SBATCH --nodes=2 --ntasks-per-node=8
#SBATCH --gpus-per-node=h100:8
#SBATCH --cpus-per-task 4
#SBATCH --mem=64G
#SBATCH -t 1-00:00:00
#SBATCH -o out-%j-%t.txt
#SBATCH -e err-%x.txt
#SBATCH -p gpu -A proj -q high
#SBATCH --exclusive
#SBATCH --requeue
#SBATCH --nice
#SBATCH --dependency=afterok:12:13

srun python train.py
`,
			want: &api.JobSpec{Name: "train", NodesMin: 2, NodesMax: 2, NtasksPerNode: 8, GpusPerNode: 8, GpuType: "h100",
				CpusPerTask: 4, MemPerNodeMb: 65536, TimeLimitS: 86400, Output: "out-%j-%t.txt", Error: "err-%x.txt",
				Partition: "gpu", Account: "proj", Qos: "high", Exclusive: true, Requeue: proto.Bool(true), Nice: 100, Dependency: "afterok:12:13"},
		},
		{
			name:   "arrays, begin, hold and switches",
			script: header + "#SBATCH --array=0-9%2\n#SBATCH --begin=now+60\n#SBATCH --hold\n#SBATCH --switches=1@5:00\ntrue\n",
			want: &api.JobSpec{Name: "job.sh", Array: "0-9%2", BeginUnixMs: testNow.Add(time.Minute).UnixMilli(), Hold: true,
				Switches: 1, SwitchesWaitS: 300},
		},
		{
			name:   "command line overrides script",
			script: header + "#SBATCH -J fromscript\n#SBATCH -N 4\n#SBATCH --time=10\necho\n",
			args:   []string{"-J", "fromcli", "-N2", "--time", "1:30:00"},
			want:   &api.JobSpec{Name: "fromcli", NodesMin: 2, NodesMax: 2, TimeLimitS: 5400},
		},
		{
			name:   "directives end at the first command",
			script: header + "\n#SBATCH -N 3\necho hi\n#SBATCH -N 5\n",
			want:   &api.JobSpec{Name: "job.sh", NodesMin: 3, NodesMax: 3},
		},
		{
			name:   "comments, quotes and near misses",
			script: header + "# SBATCH -N 9\n #SBATCH -N 9\n#SBATCH --job-name=\"my job\" # trailing comment\n#SBATCH -o 'a b.out'\nexit 0\n",
			want:   &api.JobSpec{Name: "my job", Output: "a b.out"},
		},
		{
			// Slurm's parser takes the options right after "#SBATCH".
			name:   "no blank after #SBATCH",
			script: header + "#SBATCH--time=24:00:00\n#SBATCH-N2\ntrue\n",
			want:   &api.JobSpec{Name: "job.sh", TimeLimitS: 86400, NodesMin: 2, NodesMax: 2},
		},
		{
			name:   "memory sizes with a B",
			script: header + "#SBATCH --mem=80GB\ntrue\n",
			want:   &api.JobSpec{Name: "job.sh", MemPerNodeMb: 80 * 1024},
		},
		{
			name:   "memory per CPU",
			script: header + "#SBATCH --mem-per-cpu=4G -c 8\ntrue\n",
			want:   &api.JobSpec{Name: "job.sh", MemPerCpuMb: 4096, CpusPerTask: 8},
		},
		{
			name:   "memory and CPUs per GPU",
			script: header + "#SBATCH --gpus-per-node=4 --mem-per-gpu=80G --cpus-per-gpu=16\ntrue\n",
			want:   &api.JobSpec{Name: "job.sh", GpusPerNode: 4, MemPerGpuMb: 80 * 1024, CpusPerGpu: 16},
		},
		{
			name:   "tasks-per-node is ntasks-per-node",
			script: header + "#SBATCH --tasks-per-node=4\ntrue\n",
			want:   &api.JobSpec{Name: "job.sh", NtasksPerNode: 4},
		},
		{
			// sbatch(1): with --ntasks, "a type-less GPU specification will
			// be automatically determined" (ceil(ntasks/N)); with GPUs and
			// no --ntasks, "the total task count will be automatically
			// determined" (GPUs times N).
			name:   "ntasks-per-gpu with ntasks gives GPUs",
			script: header + "#SBATCH --ntasks=5 --ntasks-per-gpu=2\ntrue\n",
			want:   &api.JobSpec{Name: "job.sh", Ntasks: 5, Gpus: 3},
		},
		{
			name:   "ntasks-per-gpu with GPUs gives tasks",
			script: header + "#SBATCH --gpus=4 --ntasks-per-gpu=2\ntrue\n",
			want:   &api.JobSpec{Name: "job.sh", Ntasks: 8, Gpus: 4},
		},
		{
			name:   "ntasks-per-gpu with GPUs per node on fixed nodes",
			script: header + "#SBATCH -N 2 --gpus-per-node=h100:4 --ntasks-per-gpu=1\ntrue\n",
			want:   &api.JobSpec{Name: "job.sh", NodesMin: 2, NodesMax: 2, GpusPerNode: 4, GpuType: "h100", Ntasks: 8},
		},
		{
			name:   "array in brackets",
			script: header + "#SBATCH --array=[0-3,7]\ntrue\n",
			want:   &api.JobSpec{Name: "job.sh", Array: "[0-3,7]"},
		},
		{
			name:   "GPU type alone is one GPU",
			script: header + "#SBATCH --gpus-per-node=h100\ntrue\n",
			want:   &api.JobSpec{Name: "job.sh", GpusPerNode: 1, GpuType: "h100"},
		},
		{
			name:   "gres type alone is one GPU",
			script: header + "#SBATCH --gres=gpu:a100\ntrue\n",
			want:   &api.JobSpec{Name: "job.sh", GpusPerNode: 1, GpuType: "a100"},
		},
		{
			name:   "kept and shown",
			script: header + "#SBATCH --comment='nightly run' --mail-type=END,FAIL --mail-user=a@b.c\n#SBATCH --time=2:00:00 --time-min=30\ntrue\n",
			want: &api.JobSpec{Name: "job.sh", Comment: "nightly run", MailType: "END,FAIL", MailUser: "a@b.c",
				TimeLimitS: 7200, TimeMinS: 1800},
		},
		{
			name:   "cpu-bind",
			script: header + "#SBATCH --cpu-bind=v,no\ntrue\n",
			want:   &api.JobSpec{Name: "job.sh", CpuBind: "verbose,none"},
		},
		{
			name:   "cpu-bind map_cpu",
			script: header + "#SBATCH --cpu-bind=map_cpu:0,0x2,verbose\ntrue\n",
			want:   &api.JobSpec{Name: "job.sh", CpuBind: "verbose,map_cpu:0,0x2"},
		},
		{
			name:   "constraint",
			script: header + "#SBATCH -C 'a100&[rack1|rack2]'\ntrue\n",
			want:   &api.JobSpec{Name: "job.sh", Constraint: "a100&[rack1|rack2]"},
		},
		{
			name:   "node range and short forms",
			script: header + "#SBATCH -N2-4\n#SBATCH -n16\n#SBATCH -c 2\n#SBATCH -G a100:4\ntrue\n",
			want:   &api.JobSpec{Name: "job.sh", NodesMin: 2, NodesMax: 4, Ntasks: 16, CpusPerTask: 2, Gpus: 4, GpuType: "a100"},
		},
		{
			name:   "gres with type",
			script: header + "#SBATCH --gres=gpu:a100:4\ntrue\n",
			want:   &api.JobSpec{Name: "job.sh", GpusPerNode: 4, GpuType: "a100"},
		},
		{
			name:   "gres count only",
			script: header + "#SBATCH --gres=gpu:2\ntrue\n",
			want:   &api.JobSpec{Name: "job.sh", GpusPerNode: 2},
		},
		{
			name:   "gres of GPUs and another resource",
			script: header + "#SBATCH --gres=gpu:a100:2,nvme:200\ntrue\n",
			want:   &api.JobSpec{Name: "job.sh", GpusPerNode: 2, GpuType: "a100", GresPerNode: map[string]uint64{"nvme": 200}},
		},
		{
			name:   "gres bare gpu is one",
			script: header + "#SBATCH --gres=gpu\ntrue\n",
			want:   &api.JobSpec{Name: "job.sh", GpusPerNode: 1},
		},
		{
			name:   "later GPU option replaces earlier",
			script: header + "#SBATCH --gpus-per-node=8\ntrue\n",
			args:   []string{"--gpus-per-task=1"},
			want:   &api.JobSpec{Name: "job.sh", GpusPerTask: 1},
		},
		{
			name:   "memory units",
			script: header + "#SBATCH --mem=512K\ntrue\n",
			want:   &api.JobSpec{Name: "job.sh", MemPerNodeMb: 1},
		},
		{
			name:   "memory terabytes and default unit",
			script: header + "#SBATCH --mem=2T\ntrue\n",
			args:   []string{"--mem", "100"},
			want:   &api.JobSpec{Name: "job.sh", MemPerNodeMb: 100},
		},
		{
			name:   "unlimited time",
			script: header + "#SBATCH -t UNLIMITED\ntrue\n",
			want:   &api.JobSpec{Name: "job.sh", TimeLimitS: -1},
		},
		{
			name: "wrap",
			args: []string{"--wrap", "echo hello world"},
			want: &api.JobSpec{Name: "wrap", Script: "#!/bin/sh\necho hello world\n"},
		},
		{
			name:  "stdin",
			stdin: header + "#SBATCH -n 2\nhostname\n",
			want:  &api.JobSpec{Name: "sbatch", Ntasks: 2, Script: header + "#SBATCH -n 2\nhostname\n"},
		},
		{
			name:   "relative chdir",
			script: header + "#SBATCH -D runs/1\ntrue\n",
			want:   &api.JobSpec{Name: "job.sh", WorkingDir: "/home/alice/work/runs/1"},
		},
		{
			name:   "absolute chdir",
			script: header + "true\n",
			args:   []string{"--chdir=/scratch/x"},
			want:   &api.JobSpec{Name: "job.sh", WorkingDir: "/scratch/x"},
		},
		{
			name:   "export none",
			script: header + "true\n",
			args:   []string{"--export=NONE"},
			want:   &api.JobSpec{Name: "job.sh", Env: map[string]string{}},
		},
		{
			name:   "export list",
			script: header + "true\n",
			args:   []string{"--export=FOO=1,PATH,MISSING"},
			want:   &api.JobSpec{Name: "job.sh", Env: map[string]string{"FOO": "1", "PATH": "/usr/bin:/bin"}},
		},
		{
			name:   "export all with override",
			script: header + "true\n",
			args:   []string{"--export=ALL,HOME=/tmp"},
			want:   &api.JobSpec{Name: "job.sh", Env: map[string]string{"HOME": "/tmp", "PATH": "/usr/bin:/bin", "LOOM_TIMEOUT": "20s", "LOOM_ADDR": "$ADDR"}},
		},
		{
			name:   "unique long prefix",
			script: header + "true\n",
			args:   []string{"--part=debug", "--job=x"},
			want:   &api.JobSpec{Name: "x", Partition: "debug"},
		},
		{
			name:   "SBATCH variables between script and command line",
			script: header + "#SBATCH -p fromscript\n#SBATCH -A fromscript\ntrue\n",
			env:    []string{"SBATCH_PARTITION=fromenv", "SBATCH_ACCOUNT=fromenv", "SBATCH_TIMELIMIT=5"},
			args:   []string{"-A", "fromcli"},
			want:   &api.JobSpec{Name: "job.sh", Partition: "fromenv", Account: "fromcli", TimeLimitS: 300},
		},
		{
			// Slurm's _validate_memory_options: a memory option in the
			// script or on the command line drops the variables.
			name:   "memory variables yield to a memory option",
			script: header + "#SBATCH --mem-per-cpu=2G\ntrue\n",
			env:    []string{"SBATCH_MEM_PER_NODE=8G", "SBATCH_CONSTRAINT=ib"},
			want:   &api.JobSpec{Name: "job.sh", MemPerCpuMb: 2048, Constraint: "ib"},
		},
		{
			name:   "memory variable without a memory option",
			script: header + "true\n",
			env:    []string{"SBATCH_MEM_PER_GPU=8G", "SBATCH_GRES=gpu:h100:2", "SBATCH_CPUS_PER_GPU=4"},
			want:   &api.JobSpec{Name: "job.sh", MemPerGpuMb: 8192, GpusPerNode: 2, GpuType: "h100", CpusPerGpu: 4},
		},
		{
			name:   "loom extensions",
			script: header + "#SBATCH --image=nvcr.io/nvidia/pytorch:24.05\n#SBATCH --container-mounts=/data:/data,/ckpt:/ckpt\n#SBATCH --max-restarts=3\ntrue\n",
			want:   &api.JobSpec{Name: "job.sh", Image: "nvcr.io/nvidia/pytorch:24.05", Mounts: []string{"/data:/data", "/ckpt:/ckpt"}, MaxRestarts: proto.Uint32(3)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeServer{}
			te := newTestEnv("sbatch", f.start(t), tt.env...)
			te.stdin = strings.NewReader(tt.stdin)
			args := tt.args
			if tt.script != "" {
				args = append(append([]string(nil), args...), writeScript(t, tt.script))
			}
			got := submitted(t, te, f, args...)

			want := proto.Clone(tt.want).(*api.JobSpec)
			if want.Script == "" {
				want.Script = tt.script
			}
			if want.WorkingDir == "" {
				want.WorkingDir = "/home/alice/work"
			}
			if tt.want.Env == nil {
				want.Env = map[string]string{"LOOM_ADDR": te.getenv("LOOM_ADDR")}
				for k, v := range allEnv {
					want.Env[k] = v
				}
				for _, kv := range tt.env {
					k, v, _ := strings.Cut(kv, "=")
					want.Env[k] = v
				}
			}
			if want.Env["LOOM_ADDR"] == "$ADDR" {
				want.Env["LOOM_ADDR"] = te.getenv("LOOM_ADDR")
			}
			if !proto.Equal(got, want) {
				t.Errorf("sbatch %q submitted\n%s\nwant\n%s", args, prototext.Format(got), prototext.Format(want))
			}
			if te.err.Len() != 0 {
				t.Errorf("sbatch %q wrote to stderr: %q", args, te.err)
			}
		})
	}
}

func TestSbatchOutputAndRequest(t *testing.T) {
	f := &fakeServer{nextID: 41}
	te := newTestEnv("sbatch", f.start(t))
	if code := te.run(t, "--wrap=true"); code != 0 {
		t.Fatalf("sbatch exited %d: %s", code, te.err)
	}
	if got, want := te.out.String(), "Submitted batch job 42\n"; got != want {
		t.Errorf("sbatch printed %q, want %q", got, want)
	}
	req := f.submits[0]
	// The server takes the user from the connection: the request names none.
	if req.GetUser() != "" || req.GetUid() != 0 || req.GetGid() != 0 || req.GetSubmitHost() != "login1" || req.GetIdempotencyToken() != "token-1" {
		t.Errorf("SubmitRequest = %s, want no user, from login1 with token-1", prototext.Format(req))
	}

	te = newTestEnv("sbatch", f.start(t))
	if code := te.run(t, "--parsable", "--wrap=true"); code != 0 {
		t.Fatalf("sbatch --parsable exited %d: %s", code, te.err)
	}
	if got, want := te.out.String(), "43\n"; got != want {
		t.Errorf("sbatch --parsable printed %q, want %q", got, want)
	}
}

func TestSbatchErrors(t *testing.T) {
	const header = "#!/bin/bash\n"
	tests := []struct {
		name    string
		script  string
		args    []string
		wantErr string // the whole of stderr
	}{
		{
			name:    "#SBATCH followed by a word is a bad directive, as in Slurm",
			script:  header + "#SBATCHX -N 9\ntrue\n",
			wantErr: "sbatch: error: line 2: invalid directive: \"X\" is not an option (write options as #SBATCH --name=value)\n",
		},
		{
			name:    "a generic resource other than gpu with a type",
			script:  header + "#SBATCH --gres=gpu:2,nvme:fast:1\ntrue\n",
			wantErr: "sbatch: error: line 2: --gres=gpu:2,nvme:fast:1: \"nvme:fast:1\": nvme has no types in Loom; give nvme:COUNT\n",
		},
		{
			name:    "ntasks-per-gpu without tasks or GPUs",
			script:  header + "#SBATCH --ntasks-per-gpu=2\ntrue\n",
			wantErr: "sbatch: error: --ntasks-per-gpu: give --ntasks, or a GPU count with --gpus, --gpus-per-node or --gres=gpu:N\n",
		},
		{
			name:    "ntasks-per-gpu with ntasks-per-node",
			script:  header + "#SBATCH --gpus=2 --ntasks-per-gpu=2 --ntasks-per-node=2\ntrue\n",
			wantErr: "sbatch: error: --ntasks-per-gpu: cannot be combined with --ntasks-per-node\n",
		},
		{
			name:    "ntasks-per-gpu with a node range",
			script:  header + "#SBATCH -N 1-2 --gpus=2 --ntasks-per-gpu=2\ntrue\n",
			wantErr: "sbatch: error: --ntasks-per-gpu: cannot be combined with a node range (--nodes=1-2)\n",
		},
		{
			name:    "ntasks-per-gpu disagreeing with ntasks",
			script:  header + "#SBATCH --gpus=2 --ntasks=3 --ntasks-per-gpu=2\ntrue\n",
			wantErr: "sbatch: error: --ntasks-per-gpu=2: --ntasks=3 is not 2 GPUs times 2\n",
		},
		{
			name:    "two memory forms",
			script:  header + "#SBATCH --mem=4G\ntrue\n",
			args:    []string{"--mem-per-cpu=1G"},
			wantErr: "sbatch: error: --mem: give only one of --mem, --mem-per-cpu and --mem-per-gpu\n",
		},
		{
			name:    "memory per GPU without GPUs",
			script:  header + "#SBATCH --mem-per-gpu=4G\ntrue\n",
			wantErr: "sbatch: error: --mem-per-gpu: the job asks for no GPUs (give --gpus, --gpus-per-node, --gpus-per-task or --gres=gpu)\n",
		},
		{
			name:    "memory size with a bare B",
			script:  header + "#SBATCH --mem=80B\ntrue\n",
			wantErr: "sbatch: error: line 2: --mem=80B: memory size \"80B\" is not a number with an optional unit K, M, G or T (KB, MB, GB, TB)\n",
		},
		{
			name:    "constraint syntax names the position",
			script:  header + "#SBATCH --constraint=a100&&hbm\ntrue\n",
			wantErr: "sbatch: error: line 2: --constraint=a100&&hbm: position 6: a feature must come before '&'\n",
		},
		{
			name:    "constraint counts beyond --nodes are refused",
			script:  header + "#SBATCH --constraint=a100*2\ntrue\n",
			wantErr: "sbatch: error: --constraint=a100*2: the counts add up to 2 nodes, more than --nodes=1; ask for at least 2 nodes\n",
		},
		{
			name:    "socket placement is refused",
			script:  header + "#SBATCH --ntasks-per-socket=2\ntrue\n",
			wantErr: "sbatch: error: line 2: --ntasks-per-socket=2: Loom does not place by socket\n",
		},
		{
			name:    "cyclic distribution",
			script:  header + "#SBATCH -m block\n#SBATCH --distribution=cyclic\ntrue\n",
			wantErr: "sbatch: error: line 3: --distribution=cyclic: only block (Slurm's default) is accepted: Loom places tasks in blocks\n",
		},
		{
			name:    "cpu-bind map_ldom",
			script:  header + "#SBATCH --cpu-bind=map_ldom:0,1\ntrue\n",
			wantErr: "sbatch: error: line 2: --cpu-bind=map_ldom:0,1: \"map_ldom\" is not implemented: Loom binds to cores (the default), threads, sockets, ldoms, rank, none, map_cpu:<list> or mask_cpu:<list>, with quiet or verbose\n",
		},
		{
			name:    "cpu-bind bad map_cpu",
			script:  header + "#SBATCH --cpu_bind=map_cpu:0,x1\ntrue\n",
			wantErr: "sbatch: error: line 2: --cpu_bind=map_cpu:0,x1: \"x1\" is not implemented: Loom binds to cores (the default), threads, sockets, ldoms, rank, none, map_cpu:<list> or mask_cpu:<list>, with quiet or verbose\n",
		},
		{
			name:    "bad mail type",
			script:  header + "#SBATCH --mail-type=END,LUNCH\ntrue\n",
			wantErr: "sbatch: error: line 2: --mail-type=END,LUNCH: \"LUNCH\" is not one of NONE, BEGIN, END, FAIL, REQUEUE, ALL, INVALID_DEPEND, STAGE_OUT, TIME_LIMIT, TIME_LIMIT_90, TIME_LIMIT_80, TIME_LIMIT_50, ARRAY_TASKS\n",
		},
		{
			name:    "time-min over time",
			script:  header + "#SBATCH --time=10 --time-min=20\ntrue\n",
			wantErr: "sbatch: error: --time-min: 1200 s is over the --time limit of 600 s\n",
		},
		{
			name:    "bad gres in directive names the line",
			script:  header + "#SBATCH -N 1\n\n#SBATCH --gres=gpu:a100:x\ntrue\n",
			wantErr: "sbatch: error: line 4: --gres=gpu:a100:x: GPU count \"x\" is not a number\n",
		},
		{
			name:    "bad time on command line names the option",
			script:  header + "true\n",
			args:    []string{"--time=abc"},
			wantErr: "sbatch: error: --time=abc: minutes \"abc\" is not a number (want M, M:S, H:M:S, D-H, D-H:M, D-H:M:S or UNLIMITED)\n",
		},
		{
			name:    "bad open mode names the option",
			script:  header + "true\n",
			args:    []string{"--open-mode=overwrite"},
			wantErr: "sbatch: error: --open-mode=overwrite: \"overwrite\" is neither append nor truncate\n",
		},
		{
			name:    "short option shown in long form",
			script:  header + "true\n",
			args:    []string{"-N", "0"},
			wantErr: "sbatch: error: --nodes=0: node count must be at least 1\n",
		},
		{
			name:    "node range backwards",
			script:  header + "#SBATCH -N 4-2\ntrue\n",
			wantErr: "sbatch: error: line 2: --nodes=4-2: maximum 2 is below minimum 4\n",
		},
		{
			name:    "bad memory",
			script:  header + "#SBATCH --mem=10X\ntrue\n",
			wantErr: "sbatch: error: line 2: --mem=10X: memory size \"10X\" is not a number with an optional unit K, M, G or T (KB, MB, GB, TB)\n",
		},
		{
			name:    "bad dependency",
			script:  header + "#SBATCH --dependency=aftr:1\ntrue\n",
			wantErr: "sbatch: error: line 2: --dependency=aftr:1: dependency type \"aftr\" is not one of after, afterany, afternotok, afterok, aftercorr, singleton\n",
		},
		{
			name:    "missing value in directive",
			script:  header + "#SBATCH --time\ntrue\n",
			wantErr: "sbatch: error: line 2: option '--time' requires an argument\n",
		},
		{
			name:    "unterminated quote",
			script:  header + "#SBATCH -J \"oops\ntrue\n",
			wantErr: "sbatch: error: line 2: unterminated \" quote\n",
		},
		{
			name:    "unknown command-line option",
			script:  header + "true\n",
			args:    []string{"--frobnicate"},
			wantErr: "sbatch: error: unrecognized option '--frobnicate'\nTry \"sbatch --help\" for more information\n",
		},
		{
			name:    "ambiguous prefix",
			script:  header + "true\n",
			args:    []string{"--no=1"},
			wantErr: "sbatch: error: option '--no' is ambiguous; possibilities: --no-kill --no-requeue --nodelist --nodes\nTry \"sbatch --help\" for more information\n",
		},
		{
			name:    "malformed array",
			script:  header + "#SBATCH --array=9-0\ntrue\n",
			wantErr: "sbatch: error: line 2: --array=9-0: \"9-0\" is not a range\n",
		},
		{
			name:    "no interpreter line",
			script:  "echo hi\n",
			wantErr: "sbatch: error: this does not look like a batch script: the first line must start with #! followed by the path to an interpreter, such as #!/bin/bash\n",
		},
		{
			name:    "DOS line ends",
			script:  "#!/bin/sh\r\ntrue\r\n",
			wantErr: "sbatch: error: batch script contains DOS line breaks (\\r\\n) instead of expected UNIX line breaks (\\n); convert it with dos2unix\n",
		},
		{
			name:    "spec validation",
			script:  header + "#SBATCH -N 2\n#SBATCH -n 1\ntrue\n",
			wantErr: "sbatch: error: --ntasks: 1 tasks cannot cover 2 nodes (each node needs at least one task)\n",
		},
		{
			name:    "script arguments",
			script:  header + "true\n",
			args:    []string{"--", "SCRIPT", "a", "b"},
			wantErr: "sbatch: error: script arguments (a b) are not supported yet: set them in the script, or pass them with --export\n",
		},
		{
			name:    "bad export",
			script:  header + "true\n",
			args:    []string{"--export=NONE,FOO"},
			wantErr: "sbatch: error: --export=NONE,FOO: NONE cannot be combined with other variables\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeServer{}
			te := newTestEnv("sbatch", f.start(t))
			path := writeScript(t, tt.script)
			args := append([]string(nil), tt.args...)
			if i := indexOf(args, "SCRIPT"); i >= 0 {
				args[i] = path
			} else {
				args = append(args, path)
			}
			if code := te.run(t, args...); code != 1 {
				t.Errorf("sbatch %q exited %d, want 1", args, code)
			}
			if got := te.err.String(); got != tt.wantErr {
				t.Errorf("sbatch %q stderr = %q, want %q", args, got, tt.wantErr)
			}
			if len(f.submits) != 0 {
				t.Errorf("sbatch %q submitted a job despite the error", args)
			}
		})
	}
}

func indexOf(s []string, v string) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return -1
}

func TestSbatchWarnings(t *testing.T) {
	f := &fakeServer{}
	te := newTestEnv("sbatch", f.start(t))
	script := "#!/bin/bash\n#SBATCH -N 1\n#SBATCH --profile=task\n#SBATCH --frobnicate=3\n#SBATCH --weird value -n 2\ntrue\n"
	spec := submitted(t, te, f, writeScript(t, script))
	want := "sbatch: warning: line 3: --profile=task: not supported by Loom yet; ignored\n" +
		"sbatch: warning: line 4: unknown option --frobnicate ignored\n" +
		"sbatch: warning: line 5: unknown option --weird ignored\n"
	if got := te.err.String(); got != want {
		t.Errorf("sbatch stderr = %q, want %q", got, want)
	}
	if spec.GetNtasks() != 2 {
		t.Errorf("sbatch after an unknown option: ntasks = %d, want 2 (options after it on the line still apply)", spec.GetNtasks())
	}
}

func TestSbatchMissingScript(t *testing.T) {
	f := &fakeServer{}
	te := newTestEnv("sbatch", f.start(t))
	if code := te.run(t, "nope.sh"); code != 1 {
		t.Errorf("sbatch nope.sh exited %d, want 1", code)
	}
	if got, want := te.err.String(), "sbatch: error: unable to open batch script nope.sh: no such file or directory\n"; got != want {
		t.Errorf("sbatch nope.sh stderr = %q, want %q", got, want)
	}
}

func TestSbatchServerError(t *testing.T) {
	f := &fakeServer{fail: status.Error(codes.InvalidArgument, `--partition: partition "x" does not exist`)}
	te := newTestEnv("sbatch", f.start(t))
	if code := te.run(t, "-p", "x", "--wrap=true"); code != 1 {
		t.Errorf("sbatch exited %d, want 1", code)
	}
	if got, want := te.err.String(), "sbatch: error: --partition: partition \"x\" does not exist\n"; got != want {
		t.Errorf("sbatch stderr = %q, want %q", got, want)
	}
	if te.out.Len() != 0 {
		t.Errorf("sbatch printed %q after an error", te.out)
	}
}

// TestSbatchFailover checks that an unreachable server and one that
// answers Unavailable are skipped, and that every attempt carries the same
// idempotency token, so that the job is created once.
func TestSbatchFailover(t *testing.T) {
	notLeader := &fakeServer{fail: status.Error(codes.Unavailable, "no leader")}
	good := &fakeServer{}
	addrs := deadAddr(t) + "," + notLeader.start(t) + "," + good.start(t)
	te := newTestEnv("sbatch", addrs)
	tokens := []string{"first", "second"}
	te.newToken = func() string { tok := tokens[0]; tokens = tokens[1:]; return tok }
	if code := te.run(t, "--wrap=true"); code != 0 {
		t.Fatalf("sbatch with LOOM_ADDR=%s exited %d: %s", addrs, code, te.err)
	}
	if len(notLeader.submits) != 1 || len(good.submits) != 1 {
		t.Fatalf("submits: %d to the Unavailable server, %d to the good one; want 1 and 1", len(notLeader.submits), len(good.submits))
	}
	if a, b := notLeader.submits[0].GetIdempotencyToken(), good.submits[0].GetIdempotencyToken(); a != "first" || b != "first" {
		t.Errorf("idempotency tokens = %q then %q, want the same first token twice", a, b)
	}
}

func TestSbatchNoServer(t *testing.T) {
	addr := deadAddr(t)
	te := newTestEnv("sbatch", addr)
	if code := te.run(t, "--wrap=true"); code != 1 {
		t.Errorf("sbatch with no server exited %d, want 1", code)
	}
	want := "sbatch: error: cannot reach a Loom server (LOOM_ADDR=" + addr + "): " + addr + ": connection refused\n"
	if got := te.err.String(); got != want {
		t.Errorf("sbatch with no server: stderr = %q, want %q", got, want)
	}
}

func TestSbatchHelp(t *testing.T) {
	te := newTestEnv("sbatch", "unused")
	if code := te.run(t, "--help"); code != 0 {
		t.Errorf("sbatch --help exited %d, want 0", code)
	}
	for _, want := range []string{"Usage: sbatch", "-N, --nodes=N[-M]", "--gres=gpu[:TYPE]:N", "--wrap=COMMAND"} {
		if !strings.Contains(te.out.String(), want) {
			t.Errorf("sbatch --help output lacks %q:\n%s", want, te.out)
		}
	}
}

func TestScanDirectives(t *testing.T) {
	script := "#!/bin/sh\n#SBATCH -N 2 -n 4 # nodes\n#SBATCH\t--job-name='a b'\n#SBATCH --output=x\\ y\n#SBATCH -J \"q\\\"x\"\n"
	got, err := scanDirectives(script)
	if err != nil {
		t.Fatal(err)
	}
	want := []directive{{2, []string{"-N", "2", "-n", "4"}}, {3, []string{"--job-name=a b"}}, {4, []string{"--output=x y"}}, {5, []string{"-J", `q"x`}}}
	if len(got) != len(want) {
		t.Fatalf("scanDirectives = %v, want %v", got, want)
	}
	for i := range want {
		if got[i].line != want[i].line || strings.Join(got[i].words, "|") != strings.Join(want[i].words, "|") {
			t.Errorf("scanDirectives directive %d = %d %q, want %d %q", i, got[i].line, got[i].words, want[i].line, want[i].words)
		}
	}
}

// sbatch --wait exits with the job's exit code once it has ended: 0 for
// a completed job, the code of a failed one, 1 for one a signal or the
// time limit ended.
func TestSbatchWait(t *testing.T) {
	done := func(state api.JobState, code, sig int32) *api.Job {
		return &api.Job{Id: 1, State: state, ExitCode: code, ExitSignal: sig}
	}
	for _, tt := range []struct {
		name     string
		job      *api.Job
		wantCode int
		wantErr  string
	}{
		{"completed", done(api.JobState_COMPLETED, 0, 0), 0, ""},
		{"failed", done(api.JobState_FAILED, 3, 0), 3, "sbatch: error: job 1 ended FAILED, exit code 3:0\n"},
		{"killed", done(api.JobState_CANCELLED, 0, 9), 1, "sbatch: error: job 1 ended CANCELLED, exit code 0:9\n"},
		{"timeout", done(api.JobState_TIMEOUT, 0, 0), 1, "sbatch: error: job 1 ended TIMEOUT, exit code 0:0\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeServer{jobs: []*api.Job{tt.job}}
			te := newTestEnv("sbatch", f.start(t))
			code := te.run(t, "--wait", "--wrap", "true")
			if code != tt.wantCode {
				t.Errorf("sbatch --wait exited %d, want %d (stderr %q)", code, tt.wantCode, te.err)
			}
			if got := te.out.String(); got != "Submitted batch job 1\n" {
				t.Errorf("stdout %q", got)
			}
			if got := te.err.String(); got != tt.wantErr {
				t.Errorf("stderr %q, want %q", got, tt.wantErr)
			}
		})
	}
	f := &fakeServer{}
	te := newTestEnv("sbatch", f.start(t))
	if code := te.run(t, "--wait", "--array=0-3", "--wrap", "true"); code == 0 || len(f.submits) != 0 {
		t.Fatalf("sbatch --wait --array exited %d after %d submits, want a refusal before submitting", code, len(f.submits))
	}
}

func TestSbatchExclude(t *testing.T) {
	f := &fakeServer{}
	te := newTestEnv("sbatch", f.start(t))
	spec := submitted(t, te, f, "-x", "node[1-2],gpu3", "--exclude=node7", "--wrap", "true")
	if got := strings.Join(spec.GetExclude(), ","); got != "node1,node2,gpu3,node7" {
		t.Fatalf("exclude = %q, want node1,node2,gpu3,node7", got)
	}
	f = &fakeServer{}
	te = newTestEnv("sbatch", f.start(t))
	if code := te.run(t, "-x", "node[3-1]", "--wrap", "true"); code == 0 || !strings.Contains(te.err.String(), "--exclude=node[3-1]") || len(f.submits) != 0 {
		t.Fatalf("bad hostlist: exit %d, stderr %q, %d submits", code, te.err.String(), len(f.submits))
	}
}

func TestSbatchNodelist(t *testing.T) {
	f := &fakeServer{}
	te := newTestEnv("sbatch", f.start(t))
	spec := submitted(t, te, f, "-w", "node[3-4]", "--wrap", "true")
	if got := strings.Join(spec.GetNodelist(), ","); got != "node3,node4" || spec.GetNodesMin() != 2 || spec.GetNodesMax() != 2 {
		t.Fatalf("nodelist %q nodes %d-%d, want node3,node4 on exactly 2 nodes", got, spec.GetNodesMin(), spec.GetNodesMax())
	}
	f = &fakeServer{}
	te = newTestEnv("sbatch", f.start(t))
	if code := te.run(t, "-w", "node[1-2]", "-N", "3", "--wrap", "true"); code == 0 || !strings.Contains(te.err.String(), "--nodelist") || len(f.submits) != 0 {
		t.Fatalf("-N 3 with two listed nodes: exit %d, stderr %q, %d submits", code, te.err.String(), len(f.submits))
	}
	f = &fakeServer{}
	te = newTestEnv("sbatch", f.start(t))
	if code := te.run(t, "-w", "node1", "-x", "node1", "--wrap", "true"); code == 0 || !strings.Contains(te.err.String(), "also in --exclude") {
		t.Fatalf("node listed and excluded: exit %d, stderr %q", code, te.err.String())
	}
}

// TestParseMemMB checks --mem sizes as Slurm 22.05's str_to_mbytes reads
// them: a unit K, M, G or T, optionally followed by B, default MB, K
// rounded up.
func TestParseMemMB(t *testing.T) {
	tests := []struct {
		in   string
		want uint64 // 0 with ok false: an error
		ok   bool
	}{
		{"512", 512, true},
		{"512M", 512, true},
		{"512MB", 512, true},
		{"80G", 80 * 1024, true},
		{"80GB", 80 * 1024, true},
		{"400gb", 400 * 1024, true},
		{"1T", 1024 * 1024, true},
		{"1tb", 1024 * 1024, true},
		{"1500K", 2, true},
		{"1024kb", 1, true},
		{"0", 0, true},
		{"80B", 0, false},
		{"80GiB", 0, false},
		{"G", 0, false},
		{"", 0, false},
		{"-1", 0, false},
		{"+5", 0, false},
		{"1.5G", 0, false},
	}
	for _, tt := range tests {
		got, err := api.ParseMemMB(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("api.ParseMemMB(%q) = %d, %v; want %d, ok %v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}
