package containerd

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/loomhpc/loom/agent/driver"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"tags.cncf.io/container-device-interface/pkg/cdi"
)

// cfsPeriod is the CPU bandwidth period; a rank of N CPUs gets N periods'
// worth of CPU time in each.
const cfsPeriod = 100000

// containerOpts is the rank's container: image or root filesystem, then
// the OCI spec.
func (d *Driver) containerOpts(ctx context.Context, id string, s driver.TaskSpec) ([]containerd.NewContainerOpts, error) {
	labels := map[string]string{LabelNode: d.cfg.Node, LabelTask: s.ID}
	for k, v := range s.Labels {
		labels[k] = v
	}
	opts := []containerd.NewContainerOpts{containerd.WithContainerLabels(labels)}
	var specOpts []oci.SpecOpts
	if s.Image == "" {
		return nil, fmt.Errorf("no image: the containerd driver runs every rank in a container; submit with --container-image (an image reference, an imported archive's name, or a root filesystem directory)")
	}
	if dir, ok := rootfsDir(s.Image); ok {
		// A directory may be shared by every rank of the node: read-only,
		// with a private /tmp.
		specOpts = append(specOpts, oci.WithRootFSPath(dir), oci.WithRootFSReadonly(),
			oci.WithMounts([]specs.Mount{{Destination: "/tmp", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "nodev", "mode=1777"}}}),
			oci.WithProcessArgs(s.Argv...))
	} else {
		img, err := d.image(ctx, s.Image)
		if err != nil {
			return nil, err
		}
		opts = append(opts, containerd.WithImage(img), containerd.WithSnapshotter(d.cfg.Snapshotter), containerd.WithNewSnapshot(id, img))
		specOpts = append(specOpts, oci.WithImageConfigArgs(img, s.Argv))
	}
	specOpts = append(specOpts,
		oci.WithEnv(s.Env),
		oci.WithUIDGID(s.UID, s.GID),
		withGroups(s.GID, s.Groups),
		oci.WithNoNewPrivileges,
		oci.WithHostNamespace(specs.NetworkNamespace),
		oci.WithHostHostsFile,
		oci.WithHostResolvconf,
		// The rank's own cgroup, read-only: learners size their data
		// loaders and caches from the memory limit they find there.
		oci.WithMounts([]specs.Mount{{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup", Options: []string{"ro", "nosuid", "noexec", "nodev"}}}),
		oci.WithMounts(bindMounts(s.Mounts)),
	)
	if s.Dir != "" {
		specOpts = append(specOpts, oci.WithProcessCwd(s.Dir))
	}
	if s.MemMB > 0 {
		limit := s.MemMB << 20
		specOpts = append(specOpts, oci.WithMemoryLimit(limit))
		if swapAccounting() && (s.AllowSwap == nil || !*s.AllowSwap) {
			// Memory and swap together: the limit is the limit, not a
			// point where the rank starts swapping.
			specOpts = append(specOpts, oci.WithMemorySwap(int64(limit)))
		}
	}
	if s.CPUs > 0 {
		specOpts = append(specOpts, oci.WithCPUCFS(int64(s.CPUs)*cfsPeriod, cfsPeriod), oci.WithCPUShares(uint64(s.CPUs)*1024))
	}
	specOpts = append(specOpts, d.gpuOpts(s)...)
	opts = append(opts, containerd.WithNewSpec(specOpts...))
	return opts, nil
}

// rootfsDir says whether image names a root filesystem directory on the
// host rather than an image.
func rootfsDir(image string) (string, bool) {
	if !filepath.IsAbs(image) {
		return "", false
	}
	fi, err := os.Stat(image)
	return image, err == nil && fi.IsDir()
}

// withGroups sets the supplementary groups exactly (the image's
// /etc/group knows nothing of the cluster's users).
func withGroups(primary uint32, groups []uint32) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
		gids := []uint32{primary}
		for _, g := range groups {
			if g != primary {
				gids = append(gids, g)
			}
		}
		s.Process.User.AdditionalGids = gids
		return nil
	}
}

func bindMounts(ms []driver.Mount) []specs.Mount {
	var out []specs.Mount
	for _, m := range ms {
		o := []string{"rbind", "rprivate", "nosuid", "nodev"}
		if m.ReadOnly {
			o = append(o, "ro")
		}
		out = append(out, specs.Mount{Source: m.Source, Destination: m.Dest, Type: "bind", Options: o})
	}
	return out
}

// swapAccounting says whether the memory cgroup can limit memory+swap
// (cgroup v1 without swapaccount=1 cannot, and runc refuses the setting).
func swapAccounting() bool {
	if _, err := os.Stat(filepath.Join(cgroupRoot, "cgroup.controllers")); err == nil {
		return true // v2: memory.swap.max, always there with the memory controller
	}
	_, err := os.Stat(filepath.Join(cgroupRoot, "memory", "memory.memsw.limit_in_bytes"))
	return err == nil
}

// gpuOpts gives the rank its GPUs and no others: the device nodes of its
// GPUs and the control devices, each only where the node has it, and the
// edits of a CDI spec that names its GPUs (library mounts, hooks). Without
// GPUs on the node the same code runs and adds nothing.
func (d *Driver) gpuOpts(s driver.TaskSpec) []oci.SpecOpts {
	if len(s.GPUIndexes) == 0 {
		return nil
	}
	var opts []oci.SpecOpts
	devs := []string{"nvidiactl", "nvidia-uvm", "nvidia-uvm-tools", "nvidia-modeset"}
	for _, i := range s.GPUIndexes {
		devs = append(devs, "nvidia"+strconv.FormatUint(uint64(i), 10))
	}
	for _, name := range devs {
		path := filepath.Join(d.cfg.DevDir, name)
		if _, err := os.Stat(path); err == nil {
			opts = append(opts, oci.WithLinuxDevice(path, "rwm"))
		}
	}
	if names := d.cdiDevices(s); len(names) > 0 {
		opts = append(opts, withCDI(d.cfg.CDISpecDirs, names))
	}
	return opts
}

// cdiDevices names the rank's GPUs as the node's CDI specs do, by UUID or
// by index (nvidia-ctk's two naming strategies); none when there is no
// spec.
func (d *Driver) cdiDevices(s driver.TaskSpec) []string {
	cache := cdiCache(d.cfg.CDISpecDirs)
	if cache == nil {
		return nil
	}
	var names []string
	for i, idx := range s.GPUIndexes {
		cands := []string{"nvidia.com/gpu=" + strconv.FormatUint(uint64(idx), 10)}
		if i < len(s.GPUs) {
			cands = append([]string{"nvidia.com/gpu=" + s.GPUs[i]}, cands...)
		}
		for _, n := range cands {
			if cache.GetDevice(n) != nil {
				names = append(names, n)
				break
			}
		}
	}
	return names
}

// cdiCache reads the CDI specs in dirs, nil when there are none.
func cdiCache(dirs []string) *cdi.Cache {
	any := false
	for _, dir := range dirs {
		if ents, err := os.ReadDir(dir); err == nil && len(ents) > 0 {
			any = true
		}
	}
	if !any {
		return nil
	}
	cache, err := cdi.NewCache(cdi.WithSpecDirs(dirs...), cdi.WithAutoRefresh(false))
	if err != nil && cache == nil {
		return nil
	}
	return cache
}

func withCDI(dirs, names []string) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
		cache := cdiCache(dirs)
		if cache == nil {
			return fmt.Errorf("CDI specs in %s disappeared", strings.Join(dirs, ", "))
		}
		if _, err := cache.InjectDevices(s, names...); err != nil {
			return fmt.Errorf("CDI devices %s: %w", strings.Join(names, ","), err)
		}
		return nil
	}
}

// outputIO has the shim start the logger for the rank's output. The
// logger writes as the rank's user, and lives as long as the container,
// not as long as the agent.
func (d *Driver) outputIO(s driver.TaskSpec) cio.Creator {
	groups := make([]string, 0, len(s.Groups))
	for _, g := range s.Groups {
		groups = append(groups, strconv.FormatUint(uint64(g), 10))
	}
	return cio.BinaryIO(d.logger, map[string]string{
		"-stdout": s.Stdout,
		"-stderr": s.Stderr,
		"-uid":    strconv.FormatUint(uint64(s.UID), 10),
		"-gid":    strconv.FormatUint(uint64(s.GID), 10),
		"-groups": strings.Join(groups, ","),
		// The shim passes "-key value" pairs, which a bool flag cannot take.
		"-truncate": truncateArg(s),
	})
}

// truncateArg lists the output files the logger empties first.
func truncateArg(s driver.TaskSpec) string {
	var t []string
	if s.TruncateStdout {
		t = append(t, "stdout")
	}
	if s.TruncateStderr {
		t = append(t, "stderr")
	}
	if len(t) == 0 {
		return "none"
	}
	return strings.Join(t, ",")
}
