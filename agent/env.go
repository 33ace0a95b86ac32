package agent

import (
	"path/filepath"
	"strconv"
	"strings"

	"github.com/loomhpc/loom/api"
	"github.com/loomhpc/loom/rankenv"
)

// rankEnv builds the environment of one rank: the submitter's exported
// variables, then the contract every launcher understands (torch env://,
// Slurm's, CUDA's and Loom's own), which the submitter cannot override.
func rankEnv(j *api.Job, r *api.Rank, node string) []string {
	env := rankEnvMap(j, r, node)
	out := make([]string, 0, len(env))
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	return out
}

// rankEnvMap is rankEnv as a map, for step tasks to add to.
func rankEnvMap(j *api.Job, r *api.Rank, node string) map[string]string {
	a := j.Allocation
	env := map[string]string{}
	for k, v := range j.Spec.Env {
		env[k] = v
	}
	if env["PATH"] == "" {
		env["PATH"] = "/usr/local/bin:/usr/bin:/bin"
	}
	if env["HOME"] == "" {
		env["HOME"] = "/"
	}
	env["USER"] = j.User
	env["LOGNAME"] = j.User
	id := strconv.FormatUint(j.Id, 10)
	u := func(v uint32) string { return strconv.FormatUint(uint64(v), 10) }
	world := u(uint32(len(a.Ranks)))
	workDir := workingDir(j)
	contract := map[string]string{
		rankenv.Rank:           u(r.Rank),
		rankenv.WorldSize:      world,
		rankenv.LocalRank:      u(r.LocalRank),
		rankenv.LocalWorldSize: u(r.LocalSize),
		rankenv.GroupRank:      u(r.NodeIndex),
		rankenv.MasterAddr:     a.MasterAddr,
		rankenv.MasterPort:     u(a.MasterPort),

		rankenv.SlurmJobID:       id,
		rankenv.SlurmJobName:     j.Spec.Name,
		rankenv.SlurmProcID:      u(r.Rank),
		rankenv.SlurmNTasks:      world,
		rankenv.SlurmLocalID:     u(r.LocalRank),
		rankenv.SlurmNodeID:      u(r.NodeIndex),
		rankenv.SlurmNNodes:      u(uint32(len(a.Nodes))),
		rankenv.SlurmJobNodeList: api.CompressHostlist(a.Nodes),
		rankenv.SlurmSubmitDir:   workDir,
		"SLURMD_NODENAME":        node,
		"SLURM_JOB_USER":         j.User,
		"SLURM_JOB_UID":          u(j.Uid),
		"SLURM_JOB_PARTITION":    j.Spec.PartitionOf(),

		rankenv.CUDAVisibleDevices:   strings.Join(r.GpuUuids, ","),
		rankenv.NVIDIAVisibleDevices: strings.Join(r.GpuUuids, ","),

		rankenv.LoomJobID:        id,
		rankenv.LoomGeneration:   strconv.FormatUint(a.Generation, 10),
		rankenv.LoomRestartCount: u(j.RestartCount),
		rankenv.LoomPeers:        strings.Join(a.Nodes, ","),
		rankenv.LoomRankPort:     u(r.Port),
	}
	if len(r.GpuUuids) == 0 {
		contract[rankenv.NVIDIAVisibleDevices] = "void"
	}
	// The job's secret comes from the servers, and a job cannot replace
	// it with one of its own choosing.
	if j.Secret != "" {
		contract[rankenv.LoomJobSecret] = j.Secret
	}
	if j.ArrayJobId != 0 {
		contract[rankenv.SlurmArrayJobID] = strconv.FormatUint(j.ArrayJobId, 10)
		contract[rankenv.SlurmArrayTaskID] = u(j.ArrayTaskId)
	}
	for k, v := range contract {
		env[k] = v
	}
	// Checkpoint and result dirs default under the submit directory (a
	// shared filesystem on real clusters) so a requeued gang finds them on
	// whichever nodes it lands; a job may name its own.
	jobDir := filepath.Join(workDir, ".loom", "job-"+id)
	if env[rankenv.LoomCheckpointDir] == "" {
		env[rankenv.LoomCheckpointDir] = filepath.Join(jobDir, "checkpoint")
	}
	if env[rankenv.LoomResultDir] == "" {
		env[rankenv.LoomResultDir] = filepath.Join(jobDir, "result")
	}
	// netcoll refuses to start without a secret. A job submitted before
	// the servers issued secrets has none (unless it brought its own);
	// its ranks run netcoll unauthenticated, as they did then.
	if env[rankenv.LoomJobSecret] == "" && env["NETCOLL_INSECURE"] == "" {
		env["NETCOLL_INSECURE"] = "1"
	}
	return env
}

func workingDir(j *api.Job) string {
	if j.Spec.WorkingDir != "" {
		return j.Spec.WorkingDir
	}
	return "/"
}

// expandPattern fills Slurm's filename patterns for one rank.
func expandPattern(p string, j *api.Job, r *api.Rank) string {
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		c := p[i]
		if c != '%' || i+1 == len(p) {
			b.WriteByte(c)
			continue
		}
		i++
		switch p[i] {
		case 'j':
			b.WriteString(strconv.FormatUint(j.Id, 10))
		case 'A':
			if j.ArrayJobId != 0 {
				b.WriteString(strconv.FormatUint(j.ArrayJobId, 10))
			} else {
				b.WriteString(strconv.FormatUint(j.Id, 10))
			}
		case 'a':
			b.WriteString(strconv.FormatUint(uint64(j.ArrayTaskId), 10))
		case 'x':
			b.WriteString(j.Spec.Name)
		case 't':
			b.WriteString(strconv.FormatUint(uint64(r.Rank), 10))
		case 's':
			if len(j.Steps) == 1 {
				b.WriteString(api.StepName(j.Steps[0].Id))
			} else {
				b.WriteString("batch")
			}
		case 'N':
			b.WriteString(r.Node)
		case 'n':
			b.WriteString(strconv.FormatUint(uint64(r.NodeIndex), 10))
		case 'u':
			b.WriteString(j.User)
		case '%':
			b.WriteByte('%')
		default:
			b.WriteByte('%')
			b.WriteByte(p[i])
		}
	}
	return b.String()
}

// outputPaths returns the absolute stdout and stderr files of a rank. As in
// Slurm, stderr joins stdout unless --error is given.
func outputPaths(j *api.Job, r *api.Rank) (stdout, stderr string) {
	dir := workingDir(j)
	abs := func(p string) string {
		p = expandPattern(p, j, r)
		if !filepath.IsAbs(p) {
			p = filepath.Join(dir, p)
		}
		return p
	}
	out := j.Spec.Output
	if out == "" {
		out = "slurm-%j.out"
	}
	stdout = abs(out)
	stderr = stdout
	if j.Spec.Error != "" {
		stderr = abs(j.Spec.Error)
	}
	return stdout, stderr
}

// truncateOutputs says which of a rank's output files its start empties.
// As in Slurm, a job's first start truncates unless --open-mode=append, and
// a requeued job appends to what its earlier run wrote. A file that several
// ranks of the gang write (an --output without %t) is never truncated: the
// ranks start at slightly different moments on different nodes, and one
// would erase what another had already written.
func truncateOutputs(j *api.Job, r *api.Rank, stdout, stderr string) (out, err bool) {
	return truncateOutputsOf(j, stdout, stderr, func(o *api.Rank) (string, string) { return outputPaths(j, o) })
}

// truncateOutputsOf is truncateOutputs with the ranks' paths given by
// paths (step tasks may write to the agent's own files).
func truncateOutputsOf(j *api.Job, stdout, stderr string, paths func(*api.Rank) (string, string)) (out, err bool) {
	if j.GetSpec().GetOpenMode() == api.OpenModeAppend || j.GetRestartCount() > 0 || j.GetAllocation().GetGeneration() > 1 {
		return false, false
	}
	writers := map[string]int{}
	for _, o := range j.GetAllocation().GetRanks() {
		so, se := paths(o)
		writers[so]++
		if se != so {
			writers[se]++
		}
	}
	return writers[stdout] == 1, stderr != stdout && writers[stderr] == 1
}
