package gpu

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestParseLink(t *testing.T) {
	tests := []struct {
		in   string
		want Link
	}{
		{"X", Link{Class: LinkSelf}},
		{" X ", Link{Class: LinkSelf}},
		{"SYS", Link{Class: LinkSYS}},
		{"SOC", Link{Class: LinkSYS}},
		{"NODE", Link{Class: LinkNODE}},
		{"PHB", Link{Class: LinkPHB}},
		{"PXB", Link{Class: LinkPXB}},
		{"PIX", Link{Class: LinkPIX}},
		{"NV1", Link{Class: LinkNV, NVLinks: 1}},
		{"NV18", Link{Class: LinkNV, NVLinks: 18}},
	}
	for _, tt := range tests {
		got, err := ParseLink(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("ParseLink(%q) = %v, %v, want %v", tt.in, got, err, tt.want)
		}
		if strings.TrimSpace(tt.in) != "SOC" && got.String() != strings.TrimSpace(tt.in) {
			t.Errorf("ParseLink(%q).String() = %q, want %q", tt.in, got.String(), strings.TrimSpace(tt.in))
		}
		if back := LinkFromAPI(got.APILink()); back != got {
			t.Errorf("LinkFromAPI(%v.APILink()) = %v, want %v", got, back, got)
		}
	}
	for _, bad := range []string{"", "NV", "NV0", "NV-1", "NV+2", "nv4", "PCI", "XX", "NVx"} {
		if l, err := ParseLink(bad); !errors.Is(err, ErrBadLink) {
			t.Errorf("ParseLink(%q) = %v, %v, want ErrBadLink", bad, l, err)
		}
	}
}

func TestPCIeClass(t *testing.T) {
	tests := []struct {
		a, b string
		want LinkClass
	}{
		{"0/h0", "1/h2", LinkSYS},
		{"0/h0/s/g", "0/h1/s/g", LinkNODE},
		{"0/h0", "0/h0", LinkPHB},
		{"0/h0/s0/g", "0/h0/s1/g", LinkPHB},
		{"0/h0/s/g", "0/h0/s/n", LinkPIX},
		{"0/h0/t/a/g", "0/h0/t/a/n", LinkPIX},
		{"0/h0/t/a/g", "0/h0/t/b/g", LinkPXB},
		{"0/h0/s/a/g", "0/h0/s/b/n", LinkPXB},
	}
	for _, tt := range tests {
		if got := pcieClass(tt.a, tt.b); got != tt.want {
			t.Errorf("pcieClass(%q, %q) = %v, want %v", tt.a, tt.b, got, tt.want)
		}
		if got := pcieClass(tt.b, tt.a); got != tt.want {
			t.Errorf("pcieClass(%q, %q) = %v, want %v", tt.b, tt.a, got, tt.want)
		}
	}
}

// The golden file is the DGX-1V matrix written out by hand, not produced by
// this package.
func TestDGX1V100Golden(t *testing.T) {
	want, err := os.ReadFile("testdata/dgx1-v100.golden")
	if err != nil {
		t.Fatal(err)
	}
	top, err := Profile("dgx1-v100", "host")
	if err != nil {
		t.Fatal(err)
	}
	if got := top.TopoString(); got != string(want) {
		t.Errorf("dgx1-v100 prints\n%s\nwant\n%s", got, want)
	}
}

// Every V100 of a DGX-1 has six NVLinks, and the two quads meet only in the
// GPU i, i+4 pairs.
func TestDGX1V100CubeMesh(t *testing.T) {
	top, _ := Profile("dgx1-v100", "h")
	for i := range 8 {
		sum := 0
		for j := range 8 {
			l := top.GPULink(i, j)
			if l.Class == LinkNV {
				sum += l.NVLinks
			}
			crossQuad := i/4 != j/4
			if crossQuad && (l.Class == LinkNV) != (j == i+4 || i == j+4) {
				t.Errorf("GPULink(%d, %d) = %v; across the quads only i to i+4 is NVLink", i, j, l)
			}
		}
		if sum != 6 {
			t.Errorf("GPU%d has %d NVLinks, want 6", i, sum)
		}
	}
}

func TestProfilesValid(t *testing.T) {
	names := append(ProfileNames(), "flat-1", "flat-5")
	for _, name := range names {
		top, err := Profile(name, "h")
		if err != nil {
			t.Fatalf("Profile(%q): %v", name, err)
		}
		if err := top.Validate(); err != nil {
			t.Errorf("Profile(%q).Validate() = %v", name, err)
		}
		if ProfileDescription(name) == "" {
			t.Errorf("ProfileDescription(%q) = \"\"", name)
		}
		for _, g := range top.GPUs {
			if g.CPUAffinity == "" || g.NUMANode < 0 || g.PCIBusID == "" || g.ComputeCapability == "" {
				t.Errorf("%s GPU%d = %+v, want CPU affinity, NUMA node, bus id and compute capability", name, g.Index, g)
			}
		}
		for k := range top.NICs {
			if top.NICs[k].NUMANode < 0 {
				t.Errorf("%s NIC%d has no NUMA node", name, k)
			}
		}
		if at := top.API(); len(at.Links) != len(at.Gpus)*len(at.Gpus) {
			t.Errorf("%s API(): %d links for %d GPUs", name, len(at.Links), len(at.Gpus))
		}
	}
	if _, err := Profile("nope", "h"); !errors.Is(err, ErrUnknownProfile) {
		t.Errorf("Profile(%q) error = %v, want ErrUnknownProfile", "nope", err)
	}
}

// Together the PCIe profiles show every PCIe class, so a scheduler tested
// on them meets each.
func TestPCIeProfilesCoverClasses(t *testing.T) {
	seen := map[LinkClass]bool{}
	for _, name := range []string{"pcie-4", "pcie-8"} {
		top, _ := Profile(name, "h")
		for _, row := range top.Links {
			for _, l := range row {
				seen[l.Class] = true
			}
		}
	}
	for _, c := range []LinkClass{LinkPIX, LinkPXB, LinkPHB, LinkNODE, LinkSYS} {
		if !seen[c] {
			t.Errorf("no PCIe profile has a %v link", c)
		}
	}
}

// sameAsTopo reports whether a and b agree on everything the topo -m
// format carries: devices, links, NIC names, CPU affinity and NUMA nodes.
func sameAsTopo(a, b *Topology) string {
	if len(a.GPUs) != len(b.GPUs) || len(a.NICs) != len(b.NICs) {
		return "device counts differ"
	}
	for i := range a.Links {
		if !slices.Equal(a.Links[i], b.Links[i]) {
			return "links of row " + a.deviceName(i) + " differ"
		}
	}
	for i := range a.GPUs {
		if a.GPUs[i].CPUAffinity != b.GPUs[i].CPUAffinity || a.GPUs[i].NUMANode != b.GPUs[i].NUMANode || a.GPUs[i].Index != b.GPUs[i].Index {
			return "affinity of " + a.deviceName(i) + " differs"
		}
	}
	for k := range a.NICs {
		if a.NICs[k].Name != b.NICs[k].Name {
			return "NIC names differ"
		}
	}
	return ""
}

func TestProfilesRoundTrip(t *testing.T) {
	for _, name := range append(ProfileNames(), "flat-4") {
		t.Run(name, func(t *testing.T) {
			top, _ := Profile(name, "h")
			got, err := ParseTopo(strings.NewReader(top.TopoString()))
			if err != nil {
				t.Fatalf("ParseTopo(print(%s)): %v", name, err)
			}
			if d := sameAsTopo(got, top); d != "" {
				t.Errorf("ParseTopo(print(%s)) != %s: %s", name, name, d)
			}
			if again := got.TopoString(); again != top.TopoString() {
				t.Errorf("print(parse(print(%s))) differs from print(%s)", name, name)
			}
		})
	}
}

func TestParseRealOutputs(t *testing.T) {
	tests := []struct {
		file     string
		gpus     int
		nics     []string
		checks   map[[2]int]string // device pair -> cell
		gpu0CPU  string
		gpu0NUMA int
		lastNUMA int
		nvPerGPU int // NVLinks summed over a GPU's row; -1 to skip
	}{
		{"dgx1-v100-r418.txt", 8, []string{"mlx5_0", "mlx5_2", "mlx5_1", "mlx5_3"},
			map[[2]int]string{{0, 3}: "NV2", {0, 5}: "SYS", {3, 7}: "NV1", {0, 8}: "PIX", {0, 10}: "PHB", {8, 10}: "PHB"},
			"0-19,40-59", -1, -1, 6},
		{"dgx-a100-r470.txt", 8, []string{"mlx5_0", "mlx5_1", "mlx5_2", "mlx5_3", "mlx5_4", "mlx5_5", "mlx5_6", "mlx5_7", "mlx5_8", "mlx5_9"},
			map[[2]int]string{{0, 7}: "NV12", {0, 8}: "PXB", {2, 8}: "SYS", {8, 9}: "PIX"},
			"48-63,176-191", 3, 5, 84},
		{"dgx-h100-r535.txt", 8, []string{"mlx5_0", "mlx5_1", "mlx5_2", "mlx5_3", "mlx5_4", "mlx5_5", "mlx5_6", "mlx5_7", "mlx5_8", "mlx5_9", "mlx5_10", "mlx5_11"},
			map[[2]int]string{{0, 1}: "NV18", {0, 8}: "PXB", {0, 9}: "NODE", {0, 14}: "SYS", {9, 10}: "PIX", {19, 19}: "X"},
			"0-55,112-167", 0, 1, 126},
		{"pcie8-plx-r550.txt", 8, []string{"mlx5_0", "mlx5_1"},
			map[[2]int]string{{0, 1}: "PIX", {0, 2}: "PXB", {0, 4}: "SYS", {4, 9}: "PIX", {8, 9}: "SYS"},
			"0-23,48-71", 0, 1, 0},
		{"k80-soc-r375.txt", 4, []string{"mlx4_0"},
			map[[2]int]string{{0, 1}: "PIX", {0, 2}: "SYS", {0, 4}: "PHB", {3, 4}: "SYS"},
			"0-11,24-35", -1, -1, 0},
		{"rtx3090-nvlink-spaces.txt", 2, nil,
			map[[2]int]string{{0, 1}: "NV4"},
			"0-23", -1, -1, 4},
		{"vm-1gpu-crlf.txt", 1, nil, nil, "0-31", 0, 0, 0},
		{"epyc-8gpu-node-r550.txt", 8, nil,
			map[[2]int]string{{0, 3}: "NODE", {3, 4}: "SYS"},
			"0-63,128-191", 0, 1, 0},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			top, err := ParseTopoFile(filepath.Join("testdata", tt.file))
			if err != nil {
				t.Fatalf("ParseTopoFile: %v", err)
			}
			if err := top.Validate(); err != nil {
				t.Errorf("Validate() = %v", err)
			}
			var nics []string
			for _, n := range top.NICs {
				nics = append(nics, n.Name)
			}
			if len(top.GPUs) != tt.gpus || !slices.Equal(nics, tt.nics) {
				t.Errorf("got %d GPUs, NICs %q; want %d, %q", len(top.GPUs), nics, tt.gpus, tt.nics)
			}
			for p, want := range tt.checks {
				if got := top.Links[p[0]][p[1]].String(); got != want {
					t.Errorf("%s to %s = %q, want %q", top.deviceName(p[0]), top.deviceName(p[1]), got, want)
				}
			}
			g0, gl := top.GPUs[0], top.GPUs[len(top.GPUs)-1]
			if g0.CPUAffinity != tt.gpu0CPU || g0.NUMANode != tt.gpu0NUMA || gl.NUMANode != tt.lastNUMA {
				t.Errorf("GPU0 CPU %q NUMA %d, last GPU NUMA %d; want %q, %d, %d", g0.CPUAffinity, g0.NUMANode, gl.NUMANode, tt.gpu0CPU, tt.gpu0NUMA, tt.lastNUMA)
			}
			if tt.nvPerGPU >= 0 {
				sum := 0
				for j := range top.GPUs {
					if l := top.GPULink(0, j); l.Class == LinkNV {
						sum += l.NVLinks
					}
				}
				if sum != tt.nvPerGPU {
					t.Errorf("GPU0 has %d NVLinks, want %d", sum, tt.nvPerGPU)
				}
			}
			// What we print, we read back the same.
			again, err := ParseTopo(strings.NewReader(top.TopoString()))
			if err != nil {
				t.Fatalf("ParseTopo(print(parse(%s))): %v", tt.file, err)
			}
			if d := sameAsTopo(again, top); d != "" {
				t.Errorf("ParseTopo(print(parse(%s))): %s", tt.file, d)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	const hdr = "\tGPU0\tGPU1\tNIC0\tCPU Affinity\n"
	tests := []struct {
		name      string
		in        string
		line, col int
		msg       string
	}{
		{"empty", "", 1, 0, "no header row"},
		{"no header", "hello\nworld\n", 2, 0, "no header row"},
		{"bad cell", hdr + "GPU0\t X \tNVX\tPIX\t0-3\n", 2, 10, `unknown link class "NVX"`},
		{"missing row", hdr + "GPU0\t X \tNV2\tPIX\t0-3\nGPU1\tNV2\t X \tPIX\t0-3\n\nLegend:\n", 4, 0, "missing row NIC0"},
		{"short row", hdr + "GPU0\t X \tNV2\n", 2, 13, "has 2 link cells, want 3"},
		{"wrong row", hdr + "GPU1\t X \tNV2\tPIX\t0-3\n", 2, 1, `row "GPU1" where row GPU0`},
		{"asymmetric", hdr + "GPU0\t X \tNV2\tPIX\t0-3\nGPU1\tNV1\t X \tPIX\t0-3\nNIC0\tPIX\tPIX\t X \n", 3, 6, "GPU1 to GPU0 is NV1, but GPU0 to GPU1 (line 2) is NV2"},
		{"X off the diagonal", hdr + "GPU0\t X \t X \tPIX\t0-3\n", 2, 11, "GPU0 to GPU1 is X"},
		{"not X on the diagonal", hdr + "GPU0\tPIX\tNV2\tPIX\t0-3\n", 2, 6, "GPU0 to itself is PIX, want X"},
		{"NVLink to a NIC", hdr + "GPU0\t X \tNV2\tNV1\t0-3\n", 2, 14, "NVLink joins only GPUs"},
		{"bad CPU list", hdr + "GPU0\t X \tNV2\tPIX\t0-3;7\n", 2, 18, "not a CPU list"},
		{"extra cell", hdr + "GPU0\t X \tNV2\tPIX\t0-3\t9\n", 2, 22, `unexpected "9"`},
		{"NIC row with affinity", hdr + "GPU0\t X \tNV2\tPIX\t0-3\nGPU1\tNV2\t X \tPIX\t0-3\nNIC0\tPIX\tPIX\t X \t0-3\n", 4, 18, `unexpected "0-3"`},
		{"duplicate column", "\tGPU0\tGPU0\n", 1, 7, "appears twice"},
		{"GPU after NIC", "\tGPU0\tNIC0\tGPU1\n", 1, 12, "out of order"},
		{"column after affinity", "\tGPU0\tCPU Affinity\tGPU1\n", 1, 20, `column "GPU1" after the affinity`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseTopo(strings.NewReader(tt.in))
			var pe *ParseError
			if !errors.As(err, &pe) || !errors.Is(err, ErrTopoSyntax) {
				t.Fatalf("ParseTopo(%q) error = %v, want a *ParseError", tt.in, err)
			}
			if pe.Line != tt.line || pe.Col != tt.col || !strings.Contains(pe.Msg, tt.msg) {
				t.Errorf("ParseTopo(%q) error = %q (line %d, column %d), want line %d, column %d, containing %q", tt.in, err, pe.Line, pe.Col, tt.line, tt.col, tt.msg)
			}
		})
	}
}

func TestParseTopoFileNamesFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "bad.txt")
	if err := os.WriteFile(p, []byte("\tGPU0\nGPU0\tNV9x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := ParseTopoFile(p)
	if err == nil || !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), "line 2, column 6") {
		t.Errorf("ParseTopoFile(%q) error = %v, want the path and line 2, column 6", p, err)
	}
}

func TestBandwidthOrder(t *testing.T) {
	order := []Link{
		{Class: LinkSYS}, {Class: LinkNODE}, {Class: LinkPHB}, {Class: LinkPXB},
		{Class: LinkNV, NVLinks: 1}, {Class: LinkNV, NVLinks: 2}, {Class: LinkNV, NVLinks: 18}, {Class: LinkSelf},
	}
	for i := 1; i < len(order); i++ {
		a, b := order[i-1], order[i]
		if a.BandwidthGBps() >= b.BandwidthGBps() {
			t.Errorf("%v.BandwidthGBps() = %v, not below %v.BandwidthGBps() = %v", a, a.BandwidthGBps(), b, b.BandwidthGBps())
		}
		if !b.Closer(a) || a.Closer(b) {
			t.Errorf("%v.Closer(%v) = %v, want true", b, a, b.Closer(a))
		}
	}
	if got := (Link{Class: LinkPIX}).BandwidthGBps(); got < (Link{Class: LinkPXB}).BandwidthGBps() {
		t.Errorf("PIX bandwidth %v below PXB", got)
	}
}
