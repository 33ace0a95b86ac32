package gpu_test

import (
	"bufio"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/loomhpc/loom/gpu"
)

// FuzzParseTopo reads arbitrary `nvidia-smi topo -m` output. Properties: a
// failure is a syntax error (or a line too long to read); a topology it
// accepts is valid, and written back as nvidia-smi prints it, parses to
// the same GPUs, NICs and links. It uses only the exported API so that it
// can move with the parser.
func FuzzParseTopo(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "*.txt"))
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(string(b))
	}
	f.Add("\tGPU0\tGPU1\tCPU Affinity\nGPU0\t X \tNV2\t0-7\nGPU1\tNV2\t X \t0-7\n")
	f.Fuzz(func(t *testing.T, in string) {
		topo, err := gpu.ParseTopo(strings.NewReader(in))
		if err != nil {
			var pe *gpu.ParseError
			if !(errors.As(err, &pe) && errors.Is(err, gpu.ErrTopoSyntax) && pe.Line >= 1 && pe.Col >= 0) && !errors.Is(err, bufio.ErrTooLong) {
				t.Fatalf("ParseTopo error %v (%T), want a ParseError with a line", err, err)
			}
			return
		}
		if err := topo.Validate(); err != nil {
			t.Fatalf("ParseTopo accepted an invalid topology: %v", err)
		}
		out := topo.TopoString()
		again, err := gpu.ParseTopo(strings.NewReader(out))
		if err != nil {
			t.Fatalf("ParseTopo(WriteTopo(ParseTopo(input))): %v\nwritten:\n%s", err, out)
		}
		if !reflect.DeepEqual(again.GPUs, topo.GPUs) || !reflect.DeepEqual(again.NICs, topo.NICs) || !reflect.DeepEqual(again.Links, topo.Links) {
			t.Fatalf("topology changed on a write and read:\nfirst  %+v\nsecond %+v\nwritten:\n%s", topo, again, out)
		}
	})
}
