package agent

import (
	"fmt"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/loomhpc/loom/agent/driver"
	"github.com/loomhpc/loom/api"
	"github.com/loomhpc/loom/rankenv"
)

// ParseMount reads one of a job's mounts, "SRC:DST[:ro|:rw]", both paths
// absolute.
func ParseMount(m string) (driver.Mount, error) {
	parts := strings.Split(m, ":")
	var out driver.Mount
	switch len(parts) {
	case 1:
		out.Source, out.Dest = parts[0], parts[0]
	case 2:
		out.Source, out.Dest = parts[0], parts[1]
	case 3:
		out.Source, out.Dest = parts[0], parts[1]
		switch parts[2] {
		case "ro":
			out.ReadOnly = true
		case "rw":
		default:
			return out, fmt.Errorf("mount %q: option %q: want ro or rw", m, parts[2])
		}
	default:
		return out, fmt.Errorf("mount %q: want SRC:DST[:ro]", m)
	}
	if !filepath.IsAbs(out.Source) || !filepath.IsAbs(out.Dest) {
		return out, fmt.Errorf("mount %q: both paths must be absolute", m)
	}
	out.Source, out.Dest = filepath.Clean(out.Source), filepath.Clean(out.Dest)
	return out, nil
}

// containerMounts is what a containerized rank sees of the host: the
// working directory, the job's mounts, and Loom's data (read-only), result
// and checkpoint directories, each at the path its variable names. Result
// and checkpoint directories are created first, as the job's user, so a
// rank's results land on the host and not in its container.
func (a *Agent) containerMounts(j *api.Job, s driver.TaskSpec) ([]driver.Mount, error) {
	var out []driver.Mount
	covered := func(p string) bool {
		for _, m := range out {
			if p == m.Dest || strings.HasPrefix(p, m.Dest+"/") {
				return true
			}
		}
		return false
	}
	if s.Dir != "" && s.Dir != "/" {
		out = append(out, driver.Mount{Source: s.Dir, Dest: s.Dir})
	}
	for _, m := range j.Spec.Mounts {
		pm, err := ParseMount(m)
		if err != nil {
			return nil, fmt.Errorf("--container-mounts: %w", err)
		}
		out = append(out, pm)
	}
	env := map[string]string{}
	for _, kv := range s.Env {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	if d := env[rankenv.LoomDataDir]; d != "" && filepath.IsAbs(d) && !covered(d) {
		out = append(out, driver.Mount{Source: d, Dest: d, ReadOnly: true})
	}
	for _, k := range []string{rankenv.LoomResultDir, rankenv.LoomCheckpointDir} {
		d := env[k]
		if d == "" || !filepath.IsAbs(d) {
			continue
		}
		if err := mkdirAs(d, s.UID, s.GID, s.Groups); err != nil {
			return nil, fmt.Errorf("%s=%s: %w", k, d, err)
		}
		if !covered(d) {
			out = append(out, driver.Mount{Source: d, Dest: d})
		}
	}
	return out, nil
}

// mkdirAs creates dir and its parents as the given user, so that a root
// agent creates nothing the user could not have.
func mkdirAs(dir string, uid, gid uint32, groups []uint32) error {
	if fi, err := os.Stat(dir); err == nil && fi.IsDir() {
		return nil
	}
	cmd := osexec.Command("mkdir", "-p", "--", dir)
	if uint32(os.Geteuid()) != uid || uint32(os.Getegid()) != gid {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: gid, Groups: groups}}
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("cannot create it as uid %d: %s", uid, strings.TrimSpace(string(out)))
	}
	return nil
}
