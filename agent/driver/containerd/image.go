package containerd

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"
	"github.com/distribution/reference"
)

// NormalizeImage turns what a user typed for --container-image into a
// containerd image name: pyxis's "registry#image" and a docker:// prefix
// are accepted, and short names get Docker Hub's defaults
// ("ubuntu" is docker.io/library/ubuntu:latest).
func NormalizeImage(ref string) (string, error) {
	ref = strings.TrimPrefix(ref, "docker://")
	if reg, rest, ok := strings.Cut(ref, "#"); ok {
		ref = reg + "/" + rest
	}
	named, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return "", fmt.Errorf("image %q: %w", ref, err)
	}
	return reference.TagNameOnly(named).String(), nil
}

// image finds the rank's image in containerd (imported, or pulled
// earlier), pulls it when absent, and makes sure it is unpacked.
func (d *Driver) image(ctx context.Context, ref string) (containerd.Image, error) {
	d.imageMu.Lock()
	defer d.imageMu.Unlock()
	name, err := NormalizeImage(ref)
	if err != nil {
		return nil, err
	}
	img, err := d.client.GetImage(ctx, name)
	if errdefs.IsNotFound(err) && name != ref {
		img, err = d.client.GetImage(ctx, ref) // an imported archive's own name
	}
	if errdefs.IsNotFound(err) {
		d.log.Info("pulling image", "image", name)
		img, err = d.client.Pull(ctx, name, containerd.WithPullUnpack, containerd.WithPullSnapshotter(d.cfg.Snapshotter))
		if err != nil {
			return nil, fmt.Errorf("image %s: not in containerd's %q namespace and cannot be pulled (%v); import an archive with `loom image import FILE.tar`", name, d.cfg.Namespace, err)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", name, err)
	}
	if ok, err := img.IsUnpacked(ctx, d.cfg.Snapshotter); err != nil || !ok {
		if err := img.Unpack(ctx, d.cfg.Snapshotter); err != nil {
			return nil, fmt.Errorf("image %s: unpack: %w", name, err)
		}
	}
	return img, nil
}

// Import loads an OCI (or docker save) archive into containerd's namespace
// and unpacks it, returning the names of the images it held. name, when
// set, names the archive's single image.
func Import(ctx context.Context, c *containerd.Client, namespace, snapshotter string, r io.Reader, name string) ([]string, error) {
	ctx = namespaces.WithNamespace(ctx, namespace)
	var opts []containerd.ImportOpt
	if name != "" {
		n, err := NormalizeImage(name)
		if err != nil {
			return nil, err
		}
		opts = append(opts, containerd.WithImageRefTranslator(func(string) string { return n }))
	}
	opts = append(opts, containerd.WithAllPlatforms(false))
	imgs, err := c.Import(ctx, r, opts...)
	if err != nil {
		return nil, fmt.Errorf("import: %w", err)
	}
	if len(imgs) == 0 {
		return nil, errors.New("import: the archive names no image; give one with --name")
	}
	var names []string
	for _, i := range imgs {
		img := containerd.NewImageWithPlatform(c, i, nil)
		if err := img.Unpack(ctx, snapshotter); err != nil {
			return nil, fmt.Errorf("unpack %s: %w", i.Name, err)
		}
		names = append(names, i.Name)
	}
	return names, nil
}

// ImportMain is `loom image import [--name REF] FILE.tar`: it makes a local
// image archive available to the containerd driver on this node.
func ImportMain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("loom image import", flag.ContinueOnError)
	fs.SetOutput(stderr)
	socket := fs.String("containerd-socket", DefaultSocket, "containerd's socket")
	ns := fs.String("namespace", DefaultNamespace, "containerd namespace the agents use")
	snap := fs.String("snapshotter", DefaultSnapshotter, "snapshotter to unpack into")
	name := fs.String("name", "", "name the image (default: the name recorded in the archive)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: loom image import [flags] FILE.tar\n\nImports an OCI or docker-save archive into containerd for the agent's containerd driver.")
		fs.PrintDefaults()
	}
	if len(args) == 0 || args[0] != "import" {
		fmt.Fprintln(stderr, "loom image: the only subcommand is import")
		return 2
	}
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return 2
	}
	f, err := os.Open(fs.Arg(0))
	if err != nil {
		fmt.Fprintln(stderr, "loom image import:", err)
		return 1
	}
	defer f.Close()
	if _, err := os.Stat(*socket); err != nil {
		fmt.Fprintf(stderr, "loom image import: no containerd socket at %s: start containerd or give --containerd-socket\n", *socket)
		return 1
	}
	c, err := containerd.New(*socket, containerd.WithTimeout(10*time.Second))
	if err != nil {
		fmt.Fprintln(stderr, "loom image import:", err)
		return 1
	}
	defer c.Close()
	names, err := Import(context.Background(), c, *ns, *snap, f, *name)
	if err != nil {
		fmt.Fprintf(stderr, "loom image import: %s: %v\n", fs.Arg(0), err)
		return 1
	}
	for _, n := range names {
		fmt.Fprintln(stdout, n)
	}
	return 0
}
